// bench/isolation.ts's command line: the options (its header comment is the manual) and the
// settings derived from them, checked once, so the window runner and the report read one object.
import { parseArgs } from "node:util";
import { parseRefs } from "./proxy-process.js";

export type WindowKind = "idle" | "parquet" | "csv" | "parquet4" | "csv4";
export type Load = "saturated" | "rated";

/** Where an export window's p99 is split: its first seconds (new threads, isolates, scans) and the
 * steady state after (docs/isolation.md, "Four exports: the start makes the p99"). */
export const START_SPLIT_S = 1.5;

/** The options as parseArgs returns them (also what --save keeps, so --from can print a run again). */
export type IsolationArgv = ReturnType<typeof parseArgv>;

function parseArgv(args: string[]) {
  return parseArgs({
    args,
    options: {
      rows: { type: "string", default: "5000000" },
      rounds: { type: "string", default: "2" },
      secs: { type: "string", default: "15" },
      "idle-secs": { type: "string", default: "10" },
      windows: { type: "string", default: "idle,parquet,csv,parquet4" },
      target: { type: "string", default: "file" },
      ref: { type: "string" },
      exports: { type: "string" },
      variants: { type: "string" },
      probe: { type: "boolean", default: false },
      "own-session": { type: "string", default: "no" },
      clients: { type: "string", default: "4" },
      threads: { type: "string", default: "2" },
      scale: { type: "string", default: "10" },
      rate: { type: "string" },
      load: { type: "string" },
      yardstick: { type: "string" },
      "sched-trace": { type: "string" },
      "no-build": { type: "boolean", default: false },
      save: { type: "string" },
      from: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
}

/** Proxies per build: one per --variants entry (its settings over --exports; an `env` key is the
 * proxy process's extra environment), so e.g. two niceness settings alternate in the same rounds. */
export interface Variant {
  label: string;
  exports: Record<string, unknown>;
  env: Record<string, string>;
  ownSession: boolean;
  nodeArgs: string[];
  reniceHelpers: number | undefined;
  relaySliceUs: number | undefined;
}

export interface IsolationConfig {
  argv: IsolationArgv;
  rows: number;
  rounds: number;
  secs: number;
  idleSecs: number;
  clients: number;
  threads: number;
  target: "file" | "s3";
  refs: Array<string | undefined>;
  exportsCfg: Record<string, unknown>;
  variants: Variant[];
  kinds: WindowKind[];
  loads: Load[];
  /** --rate as given, or "50%" (what the report prints beside the rate). */
  rateArg: string;
  /** P of --rate P% (NaN for a number of transactions per second). */
  ratePct: number;
  /** The rated windows' transactions per second, NaN until a --rate P% calibration has run. */
  rate: number;
  yardstick: boolean;
  traceSecs: number;
}

export function parseIsolationArgs(args: string[]): IsolationConfig {
  return isolationConfig(parseArgv(args));
}

/** The settings of a command line (parsed now, or kept in a --save file). */
export function isolationConfig(argv: IsolationArgv): IsolationConfig {
  const rows = Number(argv.rows.replace(/_/g, ""));
  const ownSession = argv["own-session"] === "yes";
  const exportsCfg: Record<string, unknown> = {
    maxConcurrentExports: 4,
    maxExportsPerUser: 4,
    // The rows an export stopped at a window's end got done are its last progress NOTICE's.
    progressIntervalMs: 500,
    ...(argv.exports === undefined ? {} : (JSON.parse(argv.exports) as Record<string, unknown>)),
  };
  const variants: Variant[] =
    argv.variants === undefined
      ? [
          {
            label: "",
            exports: exportsCfg,
            env: {},
            ownSession,
            nodeArgs: [],
            reniceHelpers: undefined,
            relaySliceUs: undefined,
          },
        ]
      : (JSON.parse(argv.variants) as Array<Record<string, unknown>>).map((v) => {
          const { env, ownSession: own, nodeArgs, reniceHelpers, relaySliceUs, ...exp } = v;
          const label = JSON.stringify(v).replace(/["{}]/g, "").replace(/^env:/, "").replace(/C2S_/g, "");
          return {
            label,
            exports: { ...exportsCfg, ...exp },
            env: (env ?? {}) as Record<string, string>,
            ownSession: (own as boolean | undefined) ?? ownSession,
            nodeArgs: (nodeArgs ?? []) as string[],
            reniceHelpers: reniceHelpers as number | undefined,
            relaySliceUs: relaySliceUs as number | undefined,
          };
        });
  const kinds = argv.windows.split(",").map((s) => s.trim()) as WindowKind[];
  for (const k of kinds)
    if (!["idle", "parquet", "csv", "parquet4", "csv4"].includes(k))
      throw new Error(`bad --windows ${argv.windows}`);
  if (!Number.isInteger(rows) || rows <= 0) throw new Error(`bad --rows ${argv.rows}`);
  const loads = (argv.load ?? (argv.rate === undefined ? "saturated" : "saturated,rated"))
    .split(",")
    .map((s) => s.trim()) as Load[];
  for (const l of loads) if (l !== "saturated" && l !== "rated") throw new Error(`bad --load ${argv.load}`);
  const rateArg = argv.rate ?? "50%";
  const ratePct = rateArg.endsWith("%") ? Number(rateArg.slice(0, -1)) : Number.NaN;
  if (!(Number(rateArg) > 0) && !(ratePct > 0)) throw new Error(`bad --rate ${argv.rate}`);
  const target = argv.target;
  if (target !== "file" && target !== "s3") throw new Error(`bad --target ${target}`);
  if (argv.yardstick !== undefined && argv.yardstick !== "pgbouncer")
    throw new Error(`bad --yardstick ${argv.yardstick} (pgbouncer is the one there is)`);
  const traceSecs = argv["sched-trace"] === undefined ? 0 : Number(argv["sched-trace"]);
  if (!(traceSecs >= 0)) throw new Error(`bad --sched-trace ${argv["sched-trace"]}`);
  return {
    argv,
    rows,
    rounds: Number(argv.rounds),
    secs: Number(argv.secs),
    idleSecs: Number(argv["idle-secs"]),
    clients: Number(argv.clients),
    threads: Number(argv.threads),
    target,
    refs: parseRefs(argv.ref),
    exportsCfg,
    variants,
    kinds,
    loads,
    rateArg,
    ratePct,
    rate: ratePct > 0 ? Number.NaN : Number(rateArg),
    yardstick: argv.yardstick === "pgbouncer",
    traceSecs,
  };
}

/** The results' key suffix of a load. */
export const loadTag = (l: Load): string => (l === "rated" ? " @rate" : "");
