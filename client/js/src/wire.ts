// What the Client, Ref, WriteBuffer and Fulfiller share: the schema's limits, chunking, and
// capability lists in parameters.
import * as $ from "capnp-es";
import type { Ref } from "./ref.js";

/** Largest value `Store.put` and `Fulfiller.fulfill` take inline (schema: maxInlineBytes). */
export const MAX_INLINE_BYTES = 16 * 1024 * 1024;
// Bytes per `WriteBuffer.write` / `Ref.read` call (the schema allows up to maxChunkBytes, 16 MiB),
// and how many such calls are in flight at once: enough to keep the socket busy both ways, few
// enough that a large value never sits whole in the socket's send queue.
export const CHUNK_BYTES = 4 * 1024 * 1024;
export const CHUNKS_IN_FLIGHT = 4;

/** Puts capabilities into a `List(Ref)` parameter. */
export function setRefList(list: $.List<unknown>, refs: readonly Ref[]): void {
  const message = (list as unknown as $.Pointer).segment.message;
  refs.forEach((ref, i) => {
    const element = (list as unknown as { get(i: number): $.Pointer }).get(i);
    $.utils.setInterfacePointer(message.addCap(ref.capability.client), element);
  });
}

/** Runs `step(i)` for i in [0, count) with at most `limit` running at once; all or nothing. */
export async function inFlight(count: number, limit: number, step: (i: number) => Promise<void>) {
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
