#!/usr/bin/env node
// Generates gen/refstore.ts from the protocol (../../schema/refstore.capnp) with capnp-es's
// compiler plugin, run by Debian's `capnp compile`. The output is not committed: `npm run build`
// regenerates it, so it always matches the schema.
//
// Two fixes for what capnp-es 0.0.16 generates (both checked here, so an upgrade that changes
// them fails loudly instead of silently):
//   * For a `-> stream` method it imports StreamResult from "capnp-es/capnp/stream", a module the
//     package does not ship; the generated file defines StreamResult itself, so the import goes.
//   * The fields named `segment` (Placement.segment, Segment.reattach's result) collide, as
//     TypeScript types, with the `segment` member every capnp-es Struct has. At run time the base
//     class's own field wins, so nothing breaks (this client never reads those fields: Node.js
//     cannot map segments), but the file does not type-check: it is marked @ts-nocheck.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const schema = resolve(packageDir, process.argv[2] ?? "../../schema/refstore.capnp");
const outDir = join(packageDir, "gen");
const plugin = join(packageDir, "node_modules", ".bin", "capnpc-ts");

mkdirSync(outDir, { recursive: true });
try {
  const args = ["compile", `-o${plugin}:${outDir}`, `--src-prefix=${dirname(schema)}`, schema];
  execFileSync("capnp", args, { stdio: ["ignore", "ignore", "inherit"] });
} catch (error) {
  console.error(`generate: capnp compile failed (${error.message}); is capnproto installed and ` +
    "have you run npm ci (tools/setup does both)?");
  process.exit(1);
}

const file = join(outDir, "refstore.ts");
const streamImport = 'import { StreamResult } from "capnp-es/capnp/stream";\n';
let text = readFileSync(file, "utf8");
if (!text.includes(streamImport) || !text.includes("export class StreamResult ")) {
  console.error("generate: capnp-es's output changed (StreamResult); revisit scripts/generate.mjs");
  process.exit(1);
}
text = text.replace(streamImport, "");
text = "// @ts-nocheck: see scripts/generate.mjs\n" + text;
writeFileSync(file, text);
