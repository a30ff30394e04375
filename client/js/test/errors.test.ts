// Failures arrive as RefstoreError with the schema's code name (parsed from the daemon's
// "refstore.CODE: ..." description behind capnp-es's prefix) and change nothing; the cluster
// secret guards TCP; a lost daemon fails calls with DISCONNECTED instead of hanging them.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { type Client, connect, RefstoreError } from "../src/index.js";
import { ErrorCode } from "../gen/refstore.js";
import { Daemon, eventually, refctl } from "./harness.js";

const SECRET = "correct horse battery staple";

let daemon: Daemon;
let client: Client;

before(async () => {
  daemon = await Daemon.start({ memory: "64M", secret: SECRET, extraArgs: ["--no-spill"] });
  client = await connect({ socket: daemon.socket });
});
after(async () => {
  await client.close();
  assert.equal(await daemon.stop(), 0, daemon.log());
});

/** Expects `promise` to fail with `code`, a RefstoreError whose message starts with its word. */
async function failsWith(promise: Promise<unknown>, code: keyof typeof ErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RefstoreError, String(error));
    assert.equal(error.code, code, error.message);
    assert.equal(error.codeNumber, ErrorCode[code]);
    assert.ok(error.message.startsWith(`refstore.${code}: `), error.message);
    return true;
  });
}

describe("error codes from the daemon", () => {
  test("restore: NOT_FOUND for an unknown token, MALFORMED for garbage, single use", async () => {
    const token = await (await client.put(Buffer.from("x"))).share(60, 1);
    // The same token with another secret (the last field before any "@owner"): well formed,
    // unknown.
    const at = token.indexOf("@");
    const body = at < 0 ? token : token.slice(0, at);
    const owner = at < 0 ? "" : token.slice(at);
    const forged = body.slice(0, -32) + (body.endsWith("0") ? "1" : "0").repeat(32) + owner;
    await failsWith(client.restore(forged), "NOT_FOUND");
    await failsWith(client.restore("not a token"), "MALFORMED");
    await client.restore(token);
    await failsWith(client.restore(token), "NOT_FOUND");  // used up
  });

  test("argument and state errors change nothing", async () => {
    const before = await client.stats();
    await failsWith(client.put(new Uint8Array(0)), "INVALID_ARGUMENT");
    await failsWith(client.create(0), "INVALID_ARGUMENT");
    await failsWith(client.create(1024 * 1024 * 1024), "TOO_LARGE");  // over 64M, no spilling
    const ref = await client.put(Buffer.from("abc"));
    await failsWith(ref.share(0), "INVALID_ARGUMENT");
    await failsWith(ref.read(4), "OUT_OF_RANGE");
    await failsWith(ref.saveAs("has a space"), "INVALID_ARGUMENT");
    await failsWith(client.lookup("nobody/has/this"), "NOT_FOUND");
    await failsWith(client.unname("nobody/has/this"), "NOT_FOUND");
    const buffer = await client.create(3);
    await buffer.write(0, Buffer.from("xyz"));
    const sealed = await buffer.seal();
    await failsWith(buffer.seal(), "FAILED_PRECONDITION");
    await failsWith(buffer.write(0, Buffer.from("x")), "FAILED_PRECONDITION");
    await sealed.release();
    await ref.release();
    const after = await client.stats();
    assert.equal(after.objects, before.objects);
    assert.equal(after.bytesUsed, before.bytesUsed);
  });

  test("a failed write breaks its WriteBuffer (capnp streaming); abort frees it", async () => {
    const broken = await client.create(3);
    await failsWith(broken.write(2, Buffer.from("xy")), "OUT_OF_RANGE");
    // `write` is a streaming call: after one fails, every later call on that capability fails
    // with the same exception (Cap'n Proto's rule), so the buffer cannot be used or sealed.
    await failsWith(broken.write(0, Buffer.from("xyz")), "OUT_OF_RANGE");
    await failsWith(broken.seal(), "OUT_OF_RANGE");
    const before = (await client.stats()).objects;
    broken.abort();  // the way out: the daemon drops the buffer and its object
    assert.ok(await eventually(async () => (await client.stats()).objects === before - 1));
    await failsWith(broken.seal(), "FAILED_PRECONDITION");
    const fine = await client.create(3);
    await fine.write(0, Buffer.from("xyz"));
    assert.equal((await (await fine.seal()).read()).toString(), "xyz");
  });

  test("names: ALREADY_EXISTS for a taken name", async () => {
    const name = `taken/${randomBytes(4).toString("hex")}`;
    await (await client.put(Buffer.from("a"))).saveAs(name);
    await failsWith((await client.put(Buffer.from("b"))).saveAs(name), "ALREADY_EXISTS");
    await client.unname(name);
  });
});

describe("TCP with a cluster secret", () => {
  test("the right secret works; values cross to C++ on the Unix socket", async () => {
    const tcp = await connect({ port: daemon.port, secret: SECRET });
    try {
      const token = await (await tcp.put(Buffer.from("over tcp"))).share(60);
      const result = await refctl(daemon.socket, "cat", token);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, "over tcp");
    } finally {
      await tcp.close();
    }
  });

  test("no secret or a wrong one: UNAUTHENTICATED at connect", async () => {
    await failsWith(connect({ port: daemon.port }), "UNAUTHENTICATED");
    const wrong = "x".repeat(SECRET.length);
    await failsWith(connect({ port: daemon.port, secret: wrong }), "UNAUTHENTICATED");
    await failsWith(connect({ port: daemon.port, secret: new TextEncoder().encode(SECRET + "!") }),
                    "UNAUTHENTICATED");
  });
});

describe("connections", () => {
  test("DISCONNECTED when there is no daemon", async () => {
    await failsWith(connect({ socket: `/tmp/rsjs-missing-${randomBytes(4).toString("hex")}.sock` }),
                    "DISCONNECTED");
  });

  test("calls waiting when the daemon dies fail with DISCONNECTED, later calls too", async () => {
    const doomed = await Daemon.start({ memory: "64M" });
    const lost = await connect({ socket: doomed.socket });
    const { ref } = await lost.promise();
    const waiting = failsWith(ref.read(), "DISCONNECTED");  // a promise nobody fulfils
    const ready = failsWith(ref.whenReady(), "DISCONNECTED");
    await doomed.kill();
    await waiting;
    await ready;
    await failsWith(lost.put(Buffer.from("x")), "DISCONNECTED");
    await lost.closed;
  });

  test("a label longer than the daemon accepts: INVALID_ARGUMENT at connect", async () => {
    await failsWith(connect({ socket: daemon.socket, name: "x".repeat(1000) }), "INVALID_ARGUMENT");
  });
});
