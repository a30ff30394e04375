// The write side of a promise (`client.promise()`).
import type { Fulfiller$Client } from "../gen/refstore.js";
import type { Client } from "./client.js";
import { RefstoreError, rpc } from "./errors.js";
import type { Ref } from "./ref.js";
import { MAX_INLINE_BYTES, setRefList } from "./wire.js";

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
          p._initData(bytes.length).copyBuffer(bytes);
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
    await this.settle("Fulfiller.reject", () =>
      this.capability.reject((p) => (p.reason = reason)).promise(),
    );
  }
}
