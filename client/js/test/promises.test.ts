// Promises across languages: fulfilled or rejected from JavaScript while a C++ reader waits, and
// a C++ fulfiller that dies, seen from JavaScript.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Client, connect, RefstoreError } from "../src/index.js";
import { Daemon, Helper, readFile, refctlPath, rsHelper, run, workDir } from "./harness.js";

let daemon: Daemon;
let client: Client;
let work: string;

before(async () => {
  daemon = await Daemon.start({ memory: "256M" });
  client = await connect({ socket: daemon.socket, name: "promises" });
  work = workDir();
});
after(async () => {
  await client.close();
  assert.equal(await daemon.stop(), 0, daemon.log());
});

/** The C++ client's view of a token: refctl get into a file, read back. */
async function readFromCpp(token: string): Promise<Buffer> {
  const output = join(work, `promised-${randomBytes(4).toString("hex")}`);
  const result = await run(refctlPath(), ["--socket", daemon.socket, "get", token, "-o", output]);
  assert.equal(result.code, 0, result.stderr);
  return readFile(output);
}

/** A C++ process waiting on the promise behind `token` (rs_helper wait: restore, whenReady). */
async function cppWaiter(token: string): Promise<Helper> {
  const waiter = new Helper(rsHelper(), ["wait", daemon.socket, token]);
  assert.equal(await waiter.nextLine(), "waiting");
  return waiter;
}

test("a promise fulfilled from JavaScript wakes a C++ waiter; C++ reads its bytes", async () => {
  const { ref, fulfiller } = await client.promise();
  assert.equal((await ref.info()).state, "promised");
  const token = await ref.share(60);
  const waiter = await cppWaiter(token);
  const waitingInJs = ref.read();
  const bytes = randomBytes(50000);
  await fulfiller.fulfill(bytes);
  assert.equal(await waiter.nextLine(), "ok");
  assert.deepEqual(await readFromCpp(token), bytes);
  assert.deepEqual(await waitingInJs, bytes);
  assert.equal((await ref.whenReady()).state, "sealed");
  await assert.rejects(fulfiller.fulfill(Buffer.from("again")), { code: "FAILED_PRECONDITION" });
});

test("a promise fulfilled with more than 16 MiB (an alias) is read by C++", async () => {
  const { ref, fulfiller } = await client.promise();
  const token = await ref.share(60);
  const waiter = await cppWaiter(token);
  const bytes = randomBytes(17 * 1024 * 1024 + 1);
  await fulfiller.fulfill(bytes);
  assert.equal(await waiter.nextLine(), "ok");
  assert.deepEqual(await readFromCpp(token), bytes);
  assert.deepEqual(await ref.read(), bytes);
});

test("fulfillWith makes the promise an alias of a value put by JavaScript", async () => {
  const { ref, fulfiller } = await client.promise();
  const bytes = randomBytes(4096);
  const value = await client.put(bytes);
  await fulfiller.fulfillWith(value);
  await value.release();  // the alias keeps the value alive
  assert.deepEqual(await readFromCpp(await ref.share(60)), bytes);
});

test("a promise rejected from JavaScript fails a waiting C++ reader with REJECTED", async () => {
  const { ref, fulfiller } = await client.promise();
  const waiter = new Helper(rsHelper(), ["wait", daemon.socket, await ref.share(60)]);
  assert.equal(await waiter.nextLine(), "waiting");
  const waitingInJs = assert.rejects(ref.read(), (error: RefstoreError) => {
    assert.equal(error.code, "REJECTED");
    assert.match(error.message, /no data today/);
    return true;
  });
  await fulfiller.reject("no data today");
  assert.equal(await waiter.nextLine(), "REJECTED");
  await waitingInJs;
});

test("a C++ fulfiller that dies breaks the promise a JavaScript reader waits on", async () => {
  const holder = new Helper(rsHelper(), ["promise", daemon.socket]);
  const token = await holder.nextLine();
  assert.ok(token?.startsWith("rs2."), token);
  const ref = await client.restore(token!);
  const waiting = assert.rejects(ref.read(), { code: "BROKEN_PROMISE" });
  await holder.kill();
  await waiting;
  await assert.rejects(ref.whenReady(), { code: "BROKEN_PROMISE" });
});
