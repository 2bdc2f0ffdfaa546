// Reads the Prometheus text exposition format (prometheus.io/docs/instrumenting/exposition_formats,
// "Text format details": `name{label="value",...} value` per sample line, `#` lines are HELP/TYPE)
// into samples a test can compare before and after.
export class Samples {
  private readonly values = new Map<string, number>();
  /** HELP and TYPE per metric name. */
  readonly types = new Map<string, string>();

  constructor(text: string) {
    for (const line of text.split("\n")) {
      if (line.startsWith("# TYPE ")) {
        const [, , name, type] = line.split(" ");
        this.types.set(name!, type!);
        continue;
      }
      if (line === "" || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
      if (m === null) throw new Error(`not a Prometheus sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === "n" ? "\n" : c));
      this.values.set(Samples.key(m[1]!, labels), Number(m[3]));
    }
  }

  private static key(name: string, labels: Record<string, string>): string {
    const ls = Object.entries(labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    return `${name}{${ls.join(",")}}`;
  }

  /** The sample's value, or undefined when the series is absent. */
  get(name: string, labels: Record<string, string> = {}): number | undefined {
    return this.values.get(Samples.key(name, labels));
  }

  /** The value, absent counting as 0 (a counter not yet incremented). */
  n(name: string, labels: Record<string, string> = {}): number {
    return this.get(name, labels) ?? 0;
  }

  /** Sum over every series of `name` whose labels include `labels`. */
  sum(name: string, labels: Record<string, string> = {}): number {
    let total = 0;
    for (const [k, v] of this.values) {
      if (!k.startsWith(`${name}{`)) continue;
      if (Object.entries(labels).every(([l, x]) => k.includes(`${l}=${JSON.stringify(x)}`))) total += v;
    }
    return total;
  }

  /** Every series of `name` with its labels (as the key text). */
  series(name: string): string[] {
    return [...this.values.keys()].filter((k) => k.startsWith(`${name}{`));
  }
}

export async function scrape(base: string): Promise<Samples> {
  const r = await fetch(`${base}/metrics`);
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`);
  return new Samples(await r.text());
}
