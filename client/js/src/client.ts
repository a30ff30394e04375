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
import { Store, Stats as StatsStruct, type Store$Client } from "../gen/refstore.js";
import { RefstoreError, rpc } from "./errors.js";
import { Fulfiller } from "./fulfiller.js";
import { Ref } from "./ref.js";
import { releaseCapability } from "./release.js";
import { defaultSocketPath } from "./socket_path.js";
import { SocketTransport } from "./transport.js";
import { MAX_INLINE_BYTES, setRefList } from "./wire.js";
import { WriteBuffer } from "./write_buffer.js";

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

type StatsField = Exclude<keyof StatsStruct, keyof $.Struct | "toString">;
/** `Store.stats`, every counter as a number (see the schema's Stats for their meaning). */
export type Stats = { [K in StatsField]: number };

function statsFields(): StatsField[] {
  return Object.entries(Object.getOwnPropertyDescriptors(StatsStruct.prototype))
    .filter(([name, d]) => d.get !== undefined && !name.startsWith("_"))
    .map(([name]) => name as StatsField);
}
const STATS_FIELDS = statsFields();

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
      try {
        await buffer.write(0, bytes);
        return await buffer.seal(options.children);
      } catch (error) {
        buffer.abort();  // give the reservation back (nothing happens once sealed)
        throw error;
      }
    }
    const results = await rpc("Store.put", () =>
      this.store
        .put((p) => {
          p._initData(bytes.length).copyBuffer(bytes);
          const children = options.children ?? [];
          if (children.length) setRefList(p._initChildren(children.length), children);
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
    s.once("error", (error) => {
      const why = `cannot connect to refstored at ${where}: ${error.message}`;
      reject(new RefstoreError("DISCONNECTED", why));
    });
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
    if (secret) p._initSecret(secret.length).copyBuffer(secret);
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
  const introduced = { version: hello.version, origin: hello.origin };
  client = new Client(store, conn, transport, closed, introduced);
  return client;
}
