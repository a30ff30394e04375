#!/usr/bin/env node
// Exits 0 when node_modules/ holds exactly what package-lock.json pins (npm ci records what it
// installed in node_modules/.package-lock.json), 1 otherwise, saying what differs. tools/setup
// runs `npm ci` only when this fails; the Bazel test uses it to say "run tools/setup" clearly.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const installedFile = join(packageDir, "node_modules", ".package-lock.json");
if (!existsSync(installedFile)) {
  console.error("client/js/node_modules is not installed");
  process.exit(1);
}
const wanted = JSON.parse(readFileSync(join(packageDir, "package-lock.json"), "utf8")).packages;
const installed = JSON.parse(readFileSync(installedFile, "utf8")).packages;
const differences = Object.entries(wanted)
  .filter(([path]) => path !== "")
  .filter(([path, entry]) => installed[path]?.version !== entry.version ||
                             installed[path]?.integrity !== entry.integrity)
  .map(([path, entry]) =>
    `${path}: ${installed[path]?.version ?? "missing"} installed, ${entry.version} pinned`);
if (differences.length > 0) {
  const list = differences.join("\n  ");
  console.error(`client/js/node_modules differs from package-lock.json:\n  ${list}`);
  process.exit(1);
}
