// Freeing memory from JavaScript: capnp-es never sends Release, so `ref.release()` and closing
// the connection (or the process dying) are what free values. The daemon's stats tell.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { type Client, connect } from "../src/index.js";
import { Daemon, eventually, nodeFixture } from "./harness.js";

let daemon: Daemon;
let observer: Client;  // a second connection that only looks

before(async () => {
  daemon = await Daemon.start({ memory: "256M" });
  observer = await connect({ socket: daemon.socket, name: "observer" });
});
after(async () => {
  await observer.close();
  assert.equal(await daemon.stop(), 0, daemon.log());
});

async function objects(): Promise<number> {
  return (await observer.stats()).objects;
}

async function left(): Promise<string> {
  return `${await objects()} objects left`;
}

test("release() frees values at once while the JavaScript process keeps running", async () => {
  const client = await connect({ socket: daemon.socket });
  assert.equal(await objects(), 0);
  const small = await client.put(randomBytes(1000));
  const buffer = await client.create(20 * 1024 * 1024);
  await buffer.write(0, randomBytes(20 * 1024 * 1024));
  const large = await buffer.seal();
  const restored = await client.restore(await small.share(1, 1));  // single use: gone once used
  let stats = await client.stats();
  assert.equal(stats.objects, 2);
  assert.equal(stats.holders, 3);
  assert.ok(stats.bytesUsed >= 20 * 1024 * 1024, `bytesUsed ${stats.bytesUsed}`);

  await large.release();
  stats = await client.stats();
  assert.equal(stats.objects, 1);
  assert.ok(stats.bytesUsed < 1024 * 1024, `bytesUsed ${stats.bytesUsed}`);
  await small.release();
  assert.equal(await objects(), 1, "the restored Ref still holds the small value");
  await restored.release();
  stats = await client.stats();
  assert.equal(stats.objects, 0);
  assert.equal(stats.holders, 0);
  assert.equal(stats.bytesUsed, 0);

  await large.release();  // a second release does nothing
  await assert.rejects(large.read(), { code: "FAILED_PRECONDITION" });
  await assert.rejects(large.share(60), { code: "FAILED_PRECONDITION" });
  // The connection is as good as before.
  const again = await client.put(Buffer.from("still here"));
  assert.equal((await again.read()).toString(), "still here");
  await again.release();
  assert.equal(await objects(), 0);
  await client.close();
});

test("abort() gives an unsealed WriteBuffer's reservation back at once", async () => {
  const client = await connect({ socket: daemon.socket });
  const buffer = await client.create(8 * 1024 * 1024);
  await buffer.write(0, randomBytes(1024 * 1024));
  let stats = await client.stats();
  assert.equal(stats.objects, 1);
  assert.equal(stats.creating, 1);
  assert.ok(stats.bytesUsed >= 8 * 1024 * 1024, `bytesUsed ${stats.bytesUsed}`);
  buffer.abort();  // Cap'n Proto Release: the daemon drops the buffer, which aborts the object
  assert.ok(await eventually(async () => (await objects()) === 0), await left());
  stats = await client.stats();
  assert.equal(stats.bytesUsed, 0);
  await assert.rejects(buffer.write(0, Buffer.from("late")), { code: "FAILED_PRECONDITION" });
  buffer.abort();  // twice does nothing
  await client.close();
});

test("released capabilities leave nothing behind on the connection", async () => {
  // capnp-es keeps an import entry per capability received (the daemon an export entry) until
  // Release: release(), seal() and settling a promise send it, so a long-running client stays
  // the same size however many values it has put.
  const client = await connect({ socket: daemon.socket });
  const conn = (client as unknown as { conn: { imports: object } }).conn;
  const imports = () => Object.keys(conn.imports).length;
  const start = imports();
  for (let i = 0; i < 300; i++) {
    await (await client.put(randomBytes(100))).release();
    const buffer = await client.create(10);
    await buffer.write(0, randomBytes(10));
    await (await buffer.seal()).release();
    const { ref, fulfiller } = await client.promise();
    await fulfiller.fulfill(randomBytes(10));
    await ref.release();
  }
  assert.equal(imports(), start);
  assert.equal(await objects(), 0);
  await client.close();
});

test("closing a client frees everything it held", async () => {
  const client = await connect({ socket: daemon.socket });
  for (let i = 0; i < 10; i++) await client.put(randomBytes(10000));
  const unsealed = await client.create(1024 * 1024);  // a reservation, never sealed
  await unsealed.write(0, randomBytes(1024 * 1024));
  const { fulfiller } = await client.promise();  // a promise nobody will fulfil
  void fulfiller;
  assert.equal(await objects(), 12);
  await client.close();
  assert.ok(await eventually(async () => (await objects()) === 0), await left());
  await assert.rejects(client.stats(), { code: "DISCONNECTED" });
});

test("a JavaScript process that is killed frees what it held", async () => {
  const before = (await observer.stats()).clients;
  const holder = nodeFixture("holder", [daemon.socket, "refs", "20", "100000"]);
  const unsealed = nodeFixture("holder", [daemon.socket, "unsealed", String(5 * 1024 * 1024)]);
  assert.equal(await holder.nextLine(), "ready");
  assert.equal(await unsealed.nextLine(), "ready");
  let stats = await observer.stats();
  assert.equal(stats.objects, 21);
  assert.equal(stats.clients, before + 2);
  assert.ok(stats.bytesUsed >= 20 * 100000 + 5 * 1024 * 1024, `bytesUsed ${stats.bytesUsed}`);
  await holder.kill();
  await unsealed.kill();
  assert.ok(await eventually(async () => (await objects()) === 0), await left());
  stats = await observer.stats();
  assert.equal(stats.bytesUsed, 0);
  assert.equal(stats.clients, before);
});
