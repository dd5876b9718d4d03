/**
 * What a model directory looked like when its model was loaded, to tell
 * whether a later load request changes anything. Triton 2.51 reloads a
 * model that is already loaded only when its directory changed since (it
 * compares modification times) or the load brings a config; otherwise the
 * request succeeds and the running model keeps serving, with its state and
 * statistics. The snapshot here is every entry's path, type, size,
 * modification and change time (nanoseconds) and inode: at least as
 * sensitive as Triton's, so an edit that Triton would see is never missed.
 *
 * @module
 */
import { lstat, readdir, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * A model directory's snapshot, as one string (equal strings: nothing in
 * the directory changed), or `undefined` when it cannot be read (a load
 * then always reloads).
 *
 * @param dir - the model directory.
 */
export async function modelDirectorySnapshot(dir: string): Promise<string | undefined> {
  try {
    const names = (await readdir(dir, { recursive: true })).map(String).toSorted();
    const rows: string[] = [entryRow(".", await stat(dir, { bigint: true }))];
    for (const name of names) {
      const path = join(dir, name);
      // A link's target counts (a model file may be a link); a dangling link, as a link.
      const s = await stat(path, { bigint: true }).catch(() => lstat(path, { bigint: true }));
      rows.push(entryRow(name, s));
    }
    return rows.join("\n");
  } catch {
    return undefined;
  }
}

function entryRow(name: string, s: { isDirectory(): boolean; size: bigint; mtimeNs: bigint; ctimeNs: bigint; ino: bigint }): string {
  return `${name}\0${s.isDirectory() ? "d" : "f"}\0${s.size}\0${s.mtimeNs}\0${s.ctimeNs}\0${s.ino}`;
}
