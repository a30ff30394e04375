// The refstore client for Node.js: values in refstored, held by Refs.
//
// Node.js cannot receive file descriptors, so this client always uses the copy path: values
// travel in chunks inside Cap'n Proto messages (capnp-es), on the Unix socket and on TCP alike.
//
// Memory: capnp-es never tells the daemon that a capability was dropped (its close() is empty,
// and garbage collection does not reach the daemon either), so a Ref that goes out of scope in
// JavaScript keeps its value alive until the connection closes. Free a value with
// `ref.release()`, or by closing the client (or ending the process). An unsealed WriteBuffer
// holds its reservation until `abort()` (or closing); a Fulfiller its promise until it settles.
// This client sends Cap'n Proto's Release itself for what it is done with (release.ts).
import * as net from "node:net";
import * as path from "node:path";
import * as $ from "capnp-es";
import {
  ObjectInfo as ObjectInfoStruct,
  ObjectState,
  Store,
  Stats as StatsStruct,
  type Fulfiller$Client,
  Ref$Client,
  type Store$Client,
  type WriteBuffer$Client,
} from "../gen/refstore.js";
import { RefstoreError, rpc } from "./errors.js";
import { releaseCapability } from "./release.js";
import { defaultSocketPath } from "./socket_path.js";
import { SocketTransport } from "./transport.js";

/** Largest value `Store.put` and `Fulfiller.fulfill` take inline (schema: maxInlineBytes). */
export const MAX_INLINE_BYTES = 16 * 1024 * 1024;
// Bytes per `WriteBuffer.write` / `Ref.read` call (the schema allows up to maxChunkBytes, 16 MiB),
// and how many such calls are in flight at once: enough to keep the socket busy both ways, few
// enough that a large value never sits whole in the socket's send queue.
const CHUNK_BYTES = 4 * 1024 * 1024;
const CHUNKS_IN_FLIGHT = 4;

export interface ConnectOptions {
  /** Unix socket path; default `$REFSTORE_SOCKET`, else `$XDG_RUNTIME_DIR/refstored.sock`, else
   *  `/tmp/refstore-<uid>/refstored.sock` (as refstored and the C++ client). */
  socket?: string;
  /** TCP instead of the Unix socket: `host` (default 127.0.0.1) and `port`. */
  host?: string;
  port?: number;
  /** The cluster secret, for a TCP listener that requires one (`refstored --secret-file`). */
  secret?: string | Uint8Array;
  /** Label shown in `refctl ls`; default "node:<script name>". */
  name?: string;
}

export interface ObjectInfo {
  id: string; // 32 hex digits, for display only
  size: number;
  hash: string; // XXH3-128 as 32 hex digits; zeros until computed (see the schema)
  state: string; // "sealed", "promised", ...
}

type StatsField = Exclude<keyof StatsStruct, keyof $.Struct | "toString">;
/** `Store.stats`, every counter as a number (see the schema's Stats for their meaning). */
export type Stats = { [K in StatsField]: number };

const STATE_NAMES = new Map<number, string>(
  Object.entries(ObjectState).map(([name, value]) => [value as number, name.toLowerCase()]),
);

function hex64(value: bigint): string {
  return value.toString(16).padStart(16, "0");
}

function objectInfo(info: ObjectInfoStruct): ObjectInfo {
  return {
    id: hex64(info.id.origin) + hex64(info.id.serial),
    size: Number(info.size),
    hash: hex64(info.hash.high) + hex64(info.hash.low),
    state: STATE_NAMES.get(info.state) ?? `state ${info.state}`,
  };
}

function statsFields(): StatsField[] {
  return Object.entries(Object.getOwnPropertyDescriptors(StatsStruct.prototype))
    .filter(([name, d]) => d.get !== undefined && !name.startsWith("_"))
    .map(([name]) => name as StatsField);
}
const STATS_FIELDS = statsFields();

function setData(data: $.Data, bytes: Uint8Array): void {
  data.copyBuffer(bytes);
}

/** Puts capabilities into a `List(Ref)` parameter. */
function setRefList(list: $.List<unknown>, refs: readonly Ref[]): void {
  const message = (list as unknown as $.Pointer).segment.message;
  refs.forEach((ref, i) => {
    const element = (list as unknown as { get(i: number): $.Pointer }).get(i);
    $.utils.setInterfacePointer(message.addCap(ref.capability.client), element);
  });
}

/** Runs `step(i)` for i in [0, count) with at most `limit` running at once; all or nothing. */
async function inFlight(count: number, limit: number, step: (i: number) => Promise<void>) {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < count) {
      const i = next++;
      try {
        await step(i);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failure !== undefined) throw failure;
}

export class Client {
  /** What `Store.hello` answered. */
  readonly daemonVersion: string;
  readonly origin: bigint;
  private closedWith?: RefstoreError;
  private readonly closedPromise: Promise<void>;

  /** @internal */
  constructor(
    /** @internal */ readonly store: Store$Client,
    private readonly conn: $.Conn,
    private readonly transport: SocketTransport,
    closed: Promise<void>,
    hello: { version: string; origin: bigint },
  ) {
    this.daemonVersion = hello.version;
    this.origin = hello.origin;
    this.closedPromise = closed;
  }

  /** Stores a copy of `bytes` and returns a Ref to it. Values up to 16 MiB go in one call;
   *  larger ones are created and written in chunks. `children` are nested references the new
   *  value keeps alive. Waits for memory up to `timeoutMs` (0: the daemon's default, 30 s). */
  async put(
    bytes: Uint8Array,
    options: { children?: readonly Ref[]; timeoutMs?: number } = {},
  ): Promise<Ref> {
    if (bytes.length > MAX_INLINE_BYTES) {
      const buffer = await this.create(bytes.length, options);
      await buffer.write(0, bytes);
      return buffer.seal(options.children);
    }
    const results = await rpc("Store.put", () =>
      this.store
        .put((p) => {
          setData(p._initData(bytes.length), bytes);
          if (options.children?.length) setRefList(p._initChildren(options.children.length), options.children);
          p.timeoutMs = options.timeoutMs ?? 0;
        })
        .promise(),
    );
    return new Ref(this, results.ref);
  }

  /** Reserves `size` bytes for a new value: `write` them, then `seal`. */
  async create(size: number, options: { timeoutMs?: number } = {}): Promise<WriteBuffer> {
    const results = await rpc("Store.create", () =>
      this.store
        .create((p) => {
          p.size = BigInt(size);
          p.timeoutMs = options.timeoutMs ?? 0;
        })
        .promise(),
    );
    return new WriteBuffer(this, results.buffer, size);
  }

  /** A new Ref from a share token (`Ref.share`), from any process in any language. */
  async restore(token: string): Promise<Ref> {
    const results = await rpc("Store.restore", () =>
      this.store.restore((p) => (p.token = token)).promise(),
    );
    return new Ref(this, results.ref);
  }

  /** A Ref to a value that does not exist yet, and the Fulfiller that will provide it. */
  async promise(): Promise<{ ref: Ref; fulfiller: Fulfiller }> {
    const results = await rpc("Store.promise", () => this.store.promise().promise());
    return { ref: new Ref(this, results.ref), fulfiller: new Fulfiller(this, results.fulfiller) };
  }

  /** A new Ref to the value pinned under `name` (`Ref.saveAs`). */
  async lookup(name: string): Promise<Ref> {
    const results = await rpc("Store.lookup", () =>
      this.store.lookup((p) => (p.name = name)).promise(),
    );
    return new Ref(this, results.ref);
  }

  /** Removes a name's pin (the value is freed if nothing else holds it). */
  async unname(name: string): Promise<void> {
    await rpc("Store.unname", () => this.store.unname((p) => (p.name = name)).promise());
  }

  async stats(): Promise<Stats> {
    const results = await rpc("Store.stats", () => this.store.stats().promise());
    const stats = results.stats;
    const out = {} as Stats;
    for (const field of STATS_FIELDS) out[field] = Number(stats[field]);
    return out;
  }

  /** Closes the connection: the daemon releases everything it held for this client. */
  async close(): Promise<void> {
    this.transport.close();
    await this.closedPromise;
  }

  /** Resolves when the connection has closed, for whatever reason. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** @internal Drops the daemon's side of a capability this client is done with. */
  releaseCapability(capability: $.Client): void {
    releaseCapability(this.conn, capability);
  }

  /** @internal Fails every call still waiting for a reply; later calls fail at once. */
  disconnected(why: Error): void {
    this.closedWith ??= new RefstoreError("DISCONNECTED", `refstored disconnected: ${why.message}`);
    const questions = (this.conn as unknown as { questions: unknown[] }).questions;
    for (const q of questions) {
      const question = q as { state?: number; reject?: (e: Error) => void } | null;
      if (question?.state === 0 /* IN_PROGRESS */) question.reject?.(this.closedWith);
    }
  }
}

export class Ref {
  private released = false;

  /** @internal */
  constructor(
    private readonly client: Client,
    /** @internal */ readonly capability: Ref$Client,
  ) {}

  /** Runs an RPC on this Ref, or fails at once if it was released. */
  private call<T>(where: string, call: () => Promise<T>): Promise<T> {
    if (this.released) {
      return Promise.reject(new RefstoreError("FAILED_PRECONDITION", `this Ref was released (${where})`));
    }
    return rpc(where, call);
  }

  /** Id, size, hash and state (waits for a large value's hash). */
  async info(): Promise<ObjectInfo> {
    const results = await this.call("Ref.info", () => this.capability.info().promise());
    return objectInfo(results.info);
  }

  /** Resolves when the value is readable (a promise fulfilled); fails with REJECTED or
   *  BROKEN_PROMISE. */
  async whenReady(): Promise<ObjectInfo> {
    const results = await this.call("Ref.whenReady", () => this.capability.whenReady().promise());
    return objectInfo(results.info);
  }

  /** The bytes from `offset` (default 0), `length` of them (default: to the end), in chunks.
   *  Waits for a promise first. */
  async read(offset = 0, length?: number): Promise<Buffer> {
    // One call answers a value that fits a chunk; only a longer one needs its size first.
    const firstLength = Math.min(length ?? CHUNK_BYTES, CHUNK_BYTES);
    const first = await this.readChunk(offset, firstLength);
    if (first.length < firstLength || firstLength === (length ?? 0)) {
      // A view of the reply's own memory: no copy.
      return Buffer.from(first.buffer, first.byteOffset, first.length);
    }
    const end = Math.min(
      (await this.whenReady()).size,
      length === undefined ? Number.MAX_SAFE_INTEGER : offset + length,
    );
    const out = Buffer.allocUnsafe(end - offset);
    out.set(first, 0);
    const start = offset + first.length;
    const chunks = Math.ceil((end - start) / CHUNK_BYTES);
    await inFlight(chunks, CHUNKS_IN_FLIGHT, async (i) => {
      const at = start + i * CHUNK_BYTES;
      const chunk = await this.readChunk(at, Math.min(CHUNK_BYTES, end - at));
      out.set(chunk, at - offset);
    });
    return out;
  }

  private async readChunk(offset: number, length: number): Promise<Uint8Array> {
    const results = await this.call("Ref.read", () =>
      this.capability
        .read((p) => {
          p.offset = BigInt(offset);
          p.length = BigInt(length);
        })
        .promise(),
    );
    return results.data.toUint8Array();
  }

  /** A printable token any process can `restore` (`uses` 0: unlimited within the ttl). */
  async share(ttlSeconds: number, uses = 0): Promise<string> {
    const results = await this.call("Ref.share", () =>
      this.capability
        .share((p) => {
          p.ttlSeconds = ttlSeconds;
          p.uses = uses;
        })
        .promise(),
    );
    return results.token;
  }

  /** New Refs to the nested references the value was sealed with. */
  async children(): Promise<Ref[]> {
    const results = await this.call("Ref.children", () => this.capability.children().promise());
    return results.children.map((child) => new Ref(this.client, new Ref$Client($.clientOrNull(child.getClient()))));
  }

  /** Pins the value under `name` until `client.unname(name)`. */
  async saveAs(name: string): Promise<void> {
    await this.call("Ref.saveAs", () => this.capability.saveAs((p) => (p.name = name)).promise());
  }

  /** Drops this reference in the daemon at once; the value is freed when nothing else holds
   *  it. Later calls on this Ref fail with FAILED_PRECONDITION. A second release does nothing. */
  async release(): Promise<void> {
    if (this.released) return;
    await this.call("Ref.release", () => this.capability.release().promise());
    this.released = true;
    this.client.releaseCapability(this.capability.client);
  }
}

export class WriteBuffer {
  private finished?: "sealed" | "aborted";

  /** @internal */
  constructor(
    private readonly client: Client,
    private readonly capability: WriteBuffer$Client,
    /** The reserved size in bytes. */
    readonly size: number,
  ) {}

  /** Runs an RPC on this buffer, or fails at once if it was sealed or aborted. */
  private call<T>(where: string, call: () => Promise<T>): Promise<T> {
    if (this.finished) {
      return Promise.reject(new RefstoreError("FAILED_PRECONDITION", `buffer already ${this.finished} (${where})`));
    }
    return rpc(where, call);
  }

  /** Done with the capability: the daemon drops it (and, unsealed, the object with it). */
  private finish(how: "sealed" | "aborted"): void {
    this.finished = how;
    this.client.releaseCapability(this.capability.client);
  }

  /** Gives the reservation up: the object is discarded and its memory freed (as dropping a
   *  WriteBuffer does in C++). Also the way out after a failed write, which leaves the buffer
   *  unusable. Nothing happens after `seal`. */
  abort(): void {
    if (!this.finished) this.finish("aborted");
  }

  /** Writes `bytes` at `offset` of the reservation, in chunks. */
  async write(offset: number, bytes: Uint8Array): Promise<void> {
    const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
    await inFlight(chunks, CHUNKS_IN_FLIGHT, async (i) => {
      const chunk = bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
      await this.call("WriteBuffer.write", () =>
        this.capability
          .write((p) => {
            p.offset = BigInt(offset + i * CHUNK_BYTES);
            setData(p._initData(chunk.length), chunk);
          })
          .promise(),
      );
    });
  }

  /** Makes the value immutable and returns a Ref to it (the buffer's hold passes to the Ref). */
  async seal(children: readonly Ref[] = []): Promise<Ref> {
    const results = await this.call("WriteBuffer.seal", () =>
      this.capability.seal((p) => this.setChildren(p, children)).promise(),
    );
    this.finish("sealed");
    return new Ref(this.client, results.ref);
  }

  /** `seal`, then `share` on the sealed Ref without waiting for it (promise pipelining): one
   *  round trip for a producer that hands the value on by token. */
  async sealAndShare(
    ttlSeconds: number,
    uses = 0,
    children: readonly Ref[] = [],
  ): Promise<{ ref: Ref; token: string }> {
    return this.call("WriteBuffer.seal", async () => {
      const sealed = this.capability.seal((p) => this.setChildren(p, children));
      const shared = sealed.getRef().share((p) => {
        p.ttlSeconds = ttlSeconds;
        p.uses = uses;
      });
      const [results, share] = await Promise.all([sealed.promise(), shared.promise()]);
      this.finish("sealed");
      return { ref: new Ref(this.client, results.ref), token: share.token };
    });
  }

  private setChildren(p: { _initChildren(n: number): $.List<unknown> }, children: readonly Ref[]) {
    if (children.length) setRefList(p._initChildren(children.length), children);
  }
}

export class Fulfiller {
  private settled = false;

  /** @internal */
  constructor(
    private readonly client: Client,
    private readonly capability: Fulfiller$Client,
  ) {}

  /** Runs one of the settling RPCs, once; afterwards the daemon drops the Fulfiller. */
  private async settle(where: string, call: () => Promise<unknown>): Promise<void> {
    if (this.settled) {
      throw new RefstoreError("FAILED_PRECONDITION", `the promise is already settled (${where})`);
    }
    await rpc(where, call);
    this.settled = true;
    this.client.releaseCapability(this.capability.client);
  }

  /** Provides the promised value. Values over 16 MiB are written to a new value first, which
   *  the promise then becomes an alias of (no copy in the daemon). */
  async fulfill(bytes: Uint8Array, children: readonly Ref[] = []): Promise<void> {
    if (bytes.length > MAX_INLINE_BYTES && !this.settled) {
      const value = await this.client.put(bytes, { children });
      try {
        await this.fulfillWith(value);
      } finally {
        await value.release();
      }
      return;
    }
    await this.settle("Fulfiller.fulfill", () =>
      this.capability
        .fulfill((p) => {
          setData(p._initData(bytes.length), bytes);
          if (children.length) setRefList(p._initChildren(children.length), children);
        })
        .promise(),
    );
  }

  /** Makes the promise an alias of another value (no copy). */
  async fulfillWith(ref: Ref): Promise<void> {
    await this.settle("Fulfiller.fulfillWith", () =>
      this.capability.fulfillWith((p) => (p.ref = ref.capability)).promise(),
    );
  }

  /** Fails the promise: readers get `refstore.REJECTED: <reason>`. */
  async reject(reason: string): Promise<void> {
    await this.settle("Fulfiller.reject", () => this.capability.reject((p) => (p.reason = reason)).promise());
  }
}

/** Connects to refstored (Unix socket by default, TCP with `host`/`port`) and introduces this
 *  client with `Store.hello`: its label, the cluster secret if any, and that it cannot receive
 *  file descriptors (so the daemon gives it copy-path placements). */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  const tcp = options.host !== undefined || options.port !== undefined;
  const where = tcp
    ? `tcp:${options.host ?? "127.0.0.1"}:${options.port}`
    : `unix:${options.socket ?? defaultSocketPath()}`;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = tcp
      ? net.createConnection({ host: options.host ?? "127.0.0.1", port: options.port ?? 0 })
      : net.createConnection({ path: options.socket ?? defaultSocketPath() });
    s.once("connect", () => resolve(s));
    s.once("error", (error) =>
      reject(new RefstoreError("DISCONNECTED", `cannot connect to refstored at ${where}: ${error.message}`)),
    );
  });
  if (tcp) socket.setNoDelay(true);

  let client: Client | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  let earlyFailure: Error | undefined;
  const transport = new SocketTransport(socket, (why) => {
    if (client) client.disconnected(why);
    else earlyFailure = why;
    markClosed();
  });
  const conn = new $.Conn(transport);
  // A protocol violation from the daemon's side (capnp-es throws from its receive loop): close,
  // which fails every waiting call with DISCONNECTED, instead of an unhandled rejection.
  conn.onError = (error) => {
    if (error !== undefined) transport.close();
  };
  const store = conn.bootstrap(Store);
  const secret =
    typeof options.secret === "string" ? new TextEncoder().encode(options.secret) : options.secret;
  const name = options.name ?? `node:${path.basename(process.argv[1] ?? "node")}`;
  const helloCall = store.hello((p) => {
    p.clientName = name;
    if (secret) setData(p._initSecret(secret.length), secret);
    p.noFileDescriptors = true;
  });
  let hello;
  try {
    hello = await Promise.race([
      rpc("Store.hello", () => helloCall.promise()),
      closed.then(() => {
        throw new RefstoreError(
          "DISCONNECTED",
          `refstored at ${where} closed the connection: ${earlyFailure?.message ?? ""}`,
        );
      }),
    ]);
  } catch (error) {
    transport.close();
    throw error;
  }
  client = new Client(store, conn, transport, closed, { version: hello.version, origin: hello.origin });
  return client;
}
