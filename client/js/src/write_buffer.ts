// A reserved, not yet sealed value: written in chunks over the copy path, then sealed.
import type * as $ from "capnp-es";
import type { WriteBuffer$Client } from "../gen/refstore.js";
import type { Client } from "./client.js";
import { RefstoreError, rpc } from "./errors.js";
import { Ref } from "./ref.js";
import { CHUNK_BYTES, CHUNKS_IN_FLIGHT, inFlight, setRefList } from "./wire.js";

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
      const why = `buffer already ${this.finished} (${where})`;
      return Promise.reject(new RefstoreError("FAILED_PRECONDITION", why));
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
            p._initData(chunk.length).copyBuffer(chunk);
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
