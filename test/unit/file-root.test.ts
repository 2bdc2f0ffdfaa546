// --file-root against symbolic links at every level (docs/security.md): the target directory
// itself, a directory above it, one below it, the root being a link, and a directory swapped for
// a link while an upload is open. Nothing may be written outside the root, and the export fails
// with 42501.
import { mkdir, mkdtemp, readdir, rename, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { createStore } from "../../src/copy/create-store.js";
import { checkFileTarget } from "../../src/copy/storage/file-root.js";
import type { ObjectStore } from "../../src/copy/storage/object-store.js";
import { parseTargetUrl } from "../../src/copy/storage/target-url.js";
import { waitUntil } from "../support/export-checks.js";

let base: string;
let root: string;
let elsewhere: string;
const signal = () => new AbortController().signal;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "file-root-"));
  root = join(base, "root");
  elsewhere = join(base, "elsewhere");
  await mkdir(root, { recursive: true });
  await mkdir(elsewhere, { recursive: true });
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** The store an export to `url` would write with, after the --file-root text check. */
function storeFor(url: string, fileRoot = root): ObjectStore {
  const target = parseTargetUrl(url);
  checkFileTarget(target, fileRoot);
  return createStore(undefined, target, {}, fileRoot);
}

async function put(s: ObjectStore, key: string): Promise<unknown> {
  return s.put(key, "data\n", signal()).then(
    () => null,
    (e: unknown) => e,
  );
}

const outside = async (): Promise<string[]> => (await readdir(elsewhere, { recursive: true })).sort();

describe("--file-root containment", () => {
  test("the target directory is a link out of the root (R/out_link → elsewhere)", async () => {
    await symlink(elsewhere, join(root, "out_link"));
    const err = await put(storeFor(`file://${root}/out_link`), "part-0001.csv");
    expect(err).toMatchObject({ code: "42501" });
    expect(await outside()).toEqual([]);
  });

  test("a directory above the target is a link: nothing is created through it", async () => {
    await mkdir(join(root, "a"));
    await symlink(elsewhere, join(root, "a", "link"));
    const err = await put(storeFor(`file://${root}/a/link/b/c`), "part-0001.csv");
    expect(err).toMatchObject({ code: "42501" });
    expect(await outside()).toEqual([]);
  });

  test("a directory below the target (in the key) is a link", async () => {
    await mkdir(join(root, "t"));
    await symlink(elsewhere, join(root, "t", "sub"));
    const err = await put(storeFor(`file://${root}/t`), "sub/part-0001.csv");
    expect(err).toMatchObject({ code: "42501" });
    expect(await outside()).toEqual([]);
  });

  test("listing and deleting through a link out of the root are refused too", async () => {
    await symlink(elsewhere, join(root, "out_link"));
    const s = storeFor(`file://${root}/out_link`);
    await expect(s.list("", signal())).rejects.toMatchObject({ code: "42501" });
    await expect(s.delete(["x"], signal())).rejects.toMatchObject({ code: "42501" });
  });

  test("a root that is itself a link, and links that stay inside it, are fine", async () => {
    await symlink(root, join(base, "root_link"));
    await mkdir(join(root, "real"));
    await symlink(join(root, "real"), join(root, "inner_link"));
    const s = storeFor(`file://${base}/root_link/inner_link`, join(base, "root_link"));
    expect(await put(s, "part-0001.csv")).toBeNull();
    expect(await readdir(join(root, "real"))).toEqual(["part-0001.csv"]);
  });

  test("the target directory swapped for a link while an upload is open", async () => {
    const s = storeFor(`file://${root}/live`);
    const up = s.upload("part-0001.csv", signal());
    up.write(Buffer.from("first rows\n"));
    await up.drained();
    // Wait until the temp file exists, then swap the directory for a link out of the root.
    await waitUntil(
      "the upload's temp file",
      async () => (await readdir(join(root, "live")).catch(() => [])).length > 0,
    );
    await rename(join(root, "live"), join(root, "moved"));
    await symlink(elsewhere, join(root, "live"));
    up.write(Buffer.from("more rows\n"));
    await expect(up.end()).rejects.toMatchObject({ code: "42501" });
    expect(await outside()).toEqual([]);
  });

  test("the text check refuses paths outside the root before anything is touched", () => {
    expect(() => checkFileTarget(parseTargetUrl(`file://${elsewhere}/x`), root)).toThrow(
      expect.objectContaining({ code: "42501" }),
    );
    expect(() => checkFileTarget(parseTargetUrl(`file://${root}/x`), undefined)).toThrow(
      expect.objectContaining({ code: "0A000" }),
    );
  });
});
