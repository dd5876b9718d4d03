/**
 * Link checking for the generated API reference (`scripts/docs.ts --check`).
 * @module
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** Every .html file under `dir`. */
export function htmlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".html"))
    .map((e) => join(e.parentPath, e.name));
}

/**
 * Relative links (href and src) of every page that name a missing file, or a
 * `#fragment` with no matching id on the target page. TypeDoc's own
 * validation sees {@link} tags; this sees what it rendered, markdown links in
 * comments included.
 */
export function brokenLinks(dir: string): string[] {
  const ids = new Map<string, Set<string>>();
  const idsOf = (file: string): Set<string> => {
    let found = ids.get(file);
    if (!found) {
      const html = readFileSync(file, "utf8");
      found = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!));
      ids.set(file, found);
    }
    return found;
  };
  const broken: string[] = [];
  for (const page of htmlFiles(dir)) {
    const html = readFileSync(page, "utf8");
    for (const [, link = ""] of html.matchAll(/\s(?:href|src)="([^"]*)"/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith("//")) continue; // external
      const [path, fragment] = link.split("#", 2);
      const target = path === "" ? page : resolve(dirname(page), decodeURI(path));
      if (!existsSync(target)) {
        broken.push(`${relative(dir, page)}: ${link} (no such file)`);
      } else if (fragment && target.endsWith(".html") && !idsOf(target).has(decodeURIComponent(fragment))) {
        broken.push(`${relative(dir, page)}: ${link} (no such anchor)`);
      }
    }
  }
  return broken;
}
