// The README's "From JavaScript" recipe, as written there: examples/share.js puts a value and
// prints a token, refctl (C++) cats it, examples/cat.js (JavaScript) reads it back.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { join } from "node:path";
import { Daemon, examplesDir, refctl, run } from "./harness.js";

let daemon: Daemon;

before(async () => {
  daemon = await Daemon.start({ memory: "64M" });
});
after(async () => {
  assert.equal(await daemon.stop(), 0, daemon.log());
});

test("share.js prints a token that refctl and cat.js read back", async () => {
  const env = { REFSTORE_SOCKET: daemon.socket };  // the examples use the default socket
  const share = [join(examplesDir, "share.js"), "hello from JavaScript"];
  const shared = await run(process.execPath, share, env);
  assert.equal(shared.code, 0, shared.stderr);
  const token = shared.stdout.trim();
  assert.match(token, /^rs2\.[0-9a-f]{32}\./);

  const cpp = await refctl(daemon.socket, "cat", token);
  assert.equal(cpp.code, 0, cpp.stderr);
  assert.equal(cpp.stdout, "hello from JavaScript");

  const js = await run(process.execPath, [join(examplesDir, "cat.js"), token], env);
  assert.equal(js.code, 0, js.stderr);
  assert.equal(js.stdout, "hello from JavaScript");
});
