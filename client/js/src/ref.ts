// A reference to one immutable value in refstored. Holding it (in the daemon) keeps the value
// alive; `release()` lets go (see client.ts on why JavaScript must say so).
import * as $ from "capnp-es";
import { ObjectInfo as ObjectInfoStruct, ObjectState, Ref$Client } from "../gen/refstore.js";
import type { Client } from "./client.js";
import { RefstoreError, rpc } from "./errors.js";
import { CHUNK_BYTES, CHUNKS_IN_FLIGHT, inFlight } from "./wire.js";

export interface ObjectInfo {
  id: string; // 32 hex digits, for display only
  size: number;
  hash: string; // XXH3-128 as 32 hex digits; zeros until computed (see the schema)
  state: string; // "sealed", "promised", ...
}

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
      const why = `this Ref was released (${where})`;
      return Promise.reject(new RefstoreError("FAILED_PRECONDITION", why));
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
    return results.children.map(
      (child) => new Ref(this.client, new Ref$Client($.clientOrNull(child.getClient()))),
    );
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
