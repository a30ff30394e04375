// Values cross between JavaScript and C++ (refctl, on the Unix socket, reads and writes in shared
// memory) byte for byte, in both directions, small and multi-chunk, over the Unix socket and TCP.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type Client, connect, type ConnectOptions } from "../src/index.js";
import { Daemon, fileWith, readFile, refctl, workDir } from "./harness.js";

// More than one 16 MiB message (maxChunkBytes, maxInlineBytes): several write/read chunks.
const LARGE = 20 * 1024 * 1024 + 12345;

let daemon: Daemon;
let work: string;

before(async () => {
  daemon = await Daemon.start({ tcp: true, memory: "512M" });
  work = workDir();
});
after(async () => {
  assert.equal(await daemon.stop(), 0, daemon.log());
});

/** The C++ client's view of a token: refctl get into a file, read back. */
async function readFromCpp(token: string): Promise<Buffer> {
  const out = join(work, `out-${randomBytes(4).toString("hex")}`);
  const result = await refctl(daemon.socket, "get", token, "-o", out);
  assert.equal(result.code, 0, result.stderr);
  return readFile(out);
}

/** A value put by the C++ client (refctl put, shared memory), as a token. */
async function putFromCpp(bytes: Buffer): Promise<string> {
  const file = fileWith(work, `in-${randomBytes(4).toString("hex")}`, bytes);
  const result = await refctl(daemon.socket, "put", file, "--ttl", "600");
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim();
}

for (const transport of ["unix", "tcp"] as const) {
  describe(`over ${transport}`, () => {
    let client: Client;
    before(async () => {
      const options: ConnectOptions =
        transport === "unix" ? { socket: daemon.socket } : { host: "127.0.0.1", port: daemon.port };
      client = await connect({ ...options, name: `interop-${transport}` });
    });
    after(async () => {
      await client.close();
    });

    test("a small value put from JavaScript reads identically from C++", async () => {
      const bytes = randomBytes(1000);
      const ref = await client.put(bytes);
      assert.deepEqual(await readFromCpp(await ref.share(60)), bytes);
      assert.deepEqual(await ref.read(), bytes);
    });

    test("a multi-chunk value from create + write + seal reads identically from C++", async () => {
      const bytes = randomBytes(LARGE);
      const buffer = await client.create(bytes.length);
      assert.equal(buffer.size, LARGE);
      // Two writes at different offsets, each of several chunks.
      const middle = 9 * 1024 * 1024 + 3;
      await buffer.write(middle, bytes.subarray(middle));
      await buffer.write(0, bytes.subarray(0, middle));
      const ref = await buffer.seal();
      const info = await ref.info();
      assert.equal(info.size, LARGE);
      assert.equal(info.state, "sealed");
      assert.deepEqual(await readFromCpp(await ref.share(60)), bytes);
    });

    test("put() of more than 16 MiB creates and writes it in chunks", async () => {
      const bytes = randomBytes(LARGE);
      const ref = await client.put(bytes);
      assert.deepEqual(await readFromCpp(await ref.share(60)), bytes);
    });

    test("sealAndShare pipelines seal and share: the token is good in C++", async () => {
      const bytes = randomBytes(5000);
      const buffer = await client.create(bytes.length);
      await buffer.write(0, bytes);
      const { ref, token } = await buffer.sealAndShare(60, 1);
      assert.deepEqual(await readFromCpp(token), bytes);
      assert.deepEqual(await ref.read(), bytes);
    });

    test("values put from C++ read identically from JavaScript, whole and in parts", async () => {
      const small = randomBytes(777);
      const large = randomBytes(LARGE);
      const smallRef = await client.restore(await putFromCpp(small));
      const largeRef = await client.restore(await putFromCpp(large));
      assert.deepEqual(await smallRef.read(), small);
      assert.deepEqual(await largeRef.read(), large);
      // Ranges: inside one chunk, across chunk boundaries, to the end, past the end (clamped).
      assert.deepEqual(await largeRef.read(100, 50), large.subarray(100, 150));
      const across = 4 * 1024 * 1024 - 10;
      const nine = 9 * 1024 * 1024;
      assert.deepEqual(await largeRef.read(across, nine), large.subarray(across, across + nine));
      assert.deepEqual(await largeRef.read(LARGE - 5000), large.subarray(LARGE - 5000));
      assert.deepEqual(await largeRef.read(LARGE - 10, 1000), large.subarray(LARGE - 10));
      assert.equal((await largeRef.read(LARGE)).length, 0);
      assert.equal((await smallRef.info()).size, 777);
    });

    test("a token minted in JavaScript restores in JavaScript on another connection", async () => {
      const bytes = randomBytes(3000);
      const token = await (await client.put(bytes)).share(60);
      const other = await connect({ socket: daemon.socket });
      try {
        assert.deepEqual(await (await other.restore(token)).read(), bytes);
      } finally {
        await other.close();
      }
    });

    test("nested references: children stay alive with their parent and come back", async () => {
      const partA = randomBytes(100);
      const partB = randomBytes(200);
      const a = await client.put(partA);
      const b = await client.restore(await putFromCpp(partB));
      const parent = await client.put(Buffer.from("index"), { children: [a, b] });
      await a.release();
      await b.release();
      const children = await parent.children();
      assert.equal(children.length, 2);
      assert.deepEqual(await children[0].read(), partA);
      assert.deepEqual(await children[1].read(), partB);
      const sealedParent = await client.create(3);
      await sealedParent.write(0, Buffer.from("abc"));
      const withChildren = await sealedParent.seal(children);
      assert.equal((await withChildren.children()).length, 2);
    });

    test("names: saved in JavaScript, read by C++, and the other way", async () => {
      const bytes = randomBytes(1234);
      const name = `js/${transport}/${randomBytes(4).toString("hex")}`;
      await (await client.put(bytes)).saveAs(name);
      assert.deepEqual(await readFromCpp(name), bytes);
      const fromCpp = randomBytes(4321);
      const file = fileWith(work, "named", fromCpp);
      const cppName = `cpp/${transport}/${randomBytes(4).toString("hex")}`;
      assert.equal((await refctl(daemon.socket, "put", file, "--name", cppName)).code, 0);
      assert.deepEqual(await (await client.lookup(cppName)).read(), fromCpp);
      await client.unname(name);
      await client.unname(cppName);
      assert.notEqual((await refctl(daemon.socket, "get", name, "-o", join(work, "gone"))).code, 0);
    });
  });
}
