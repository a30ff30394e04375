// Cap'n Proto's standard stream framing over a Node.js socket (Unix or TCP), as a capnp-es
// Transport. capnp-es ships only DeferredTransport, which holds one pending message at a time
// and drops a second one that arrives before the RPC loop asks again (two replies in one read are
// the common case), so this keeps a queue.
import type * as net from "node:net";
import { Message } from "capnp-es";
import { Message as RpcMessage } from "capnp-es/capnp/rpc";

// Frames larger than this are a protocol error: the daemon's replies stay below ~16 MiB of data
// (maxChunkBytes, maxInlineBytes) plus a little structure.
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const MAX_SEGMENTS = 512;
// Messages up to this size are sent as one buffer; larger ones as their segments, uncopied.
const GATHER_BYTES = 64 * 1024;

/** Segment sizes in bytes of the frame whose header starts `head`, and the header's length;
 *  undefined while the header is incomplete. */
function frameHeader(head: Uint8Array): { headerBytes: number; sizes: number[] } | undefined {
  if (head.length < 4) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const count = view.getUint32(0, true) + 1;
  if (count > MAX_SEGMENTS) {
    throw new Error(`refstore.INTERNAL: a message claims ${count} segments`);
  }
  const headerBytes = (4 + 4 * count + 7) & ~7;
  if (head.length < headerBytes) return undefined;
  const sizes: number[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    sizes.push(view.getUint32(4 + 4 * i, true) * 8);
    total += sizes[i];
  }
  if (total > MAX_FRAME_BYTES) {
    throw new Error(`refstore.INTERNAL: a message of ${total} bytes exceeds ${MAX_FRAME_BYTES}`);
  }
  return { headerBytes, sizes };
}

/** A message over segments received as separate buffers (no copy). capnp-es does not export
 *  its MultiSegmentArena, but its Message takes any object of that shape (`kind` 1 is
 *  ArenaKind.MULTI_SEGMENT); the pinned version is tested on every run. */
function messageOf(segments: ArrayBuffer[]): Message {
  const arena = { kind: 1, buffers: segments };
  return new Message(arena as unknown as ArrayBuffer, false);
}

// What capnp-es keeps of a message it built: its segments (buffers with room to spare).
interface MessageInternals {
  _capnp: { segments: { buffer: ArrayBuffer; byteLength: number }[] };
}

export class SocketTransport {
  private readonly frames: ArrayBuffer[][] = [];
  private waiter?: { resolve: (m: RpcMessage) => void; reject: (e?: unknown) => void };
  private closed = false;
  // Bytes of a frame whose header is not complete yet.
  private headChunks: Buffer[] = [];
  // The frame being filled, once its header is known: its segments, the one being filled, and
  // how much of that one is.
  private segments?: Uint8Array[];
  private segment = 0;
  private filled = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly onClose: (why: Error) => void,
  ) {
    socket.on("data", (chunk: Buffer) => {
      try {
        this.receive(chunk);
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on("error", (error) => this.fail(error));
    socket.on("close", () => this.fail(new Error("the connection closed")));
  }

  sendMessage(message: RpcMessage): void {
    if (this.closed) throw new Error("refstore.DISCONNECTED: the connection is closed");
    const whole = message.segment.message;
    const segments = (whole as unknown as MessageInternals)._capnp.segments;
    const bytes = segments.reduce((sum, s) => sum + s.byteLength, 0);
    if (bytes <= GATHER_BYTES) {
      this.socket.write(new Uint8Array(whole.toArrayBuffer()));
      return;
    }
    // A large message (a chunk of a value): the header, then each segment's own memory.
    const header = new Uint32Array((segments.length + 2) & ~1);
    header[0] = segments.length - 1;
    segments.forEach((s, i) => (header[i + 1] = s.byteLength / 8));
    this.socket.cork();
    this.socket.write(new Uint8Array(header.buffer));
    for (const s of segments) this.socket.write(new Uint8Array(s.buffer, 0, s.byteLength));
    this.socket.uncork();
  }

  recvMessage(): Promise<RpcMessage> {
    const frame = this.frames.shift();
    if (frame !== undefined) return Promise.resolve(this.parse(frame));
    // Rejecting with undefined ends capnp-es's receive loop quietly.
    if (this.closed) return Promise.reject(undefined);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  close(): void {
    this.fail(new Error("the client closed the connection"));
  }

  private parse(frame: ArrayBuffer[]): RpcMessage {
    return messageOf(frame).getRoot(RpcMessage);
  }

  private deliver(frame: ArrayBuffer[]): void {
    const waiter = this.waiter;
    if (waiter === undefined) {
      this.frames.push(frame);
      return;
    }
    this.waiter = undefined;
    try {
      waiter.resolve(this.parse(frame));
    } catch (error) {
      waiter.reject(error);
    }
  }

  private receive(chunk: Buffer): void {
    while (chunk.length > 0) {
      if (this.segments !== undefined) {
        const target = this.segments[this.segment];
        const n = Math.min(chunk.length, target.length - this.filled);
        target.set(chunk.subarray(0, n), this.filled);
        this.filled += n;
        chunk = chunk.subarray(n);
        this.finishSegments();
        continue;
      }
      this.headChunks.push(chunk);
      const head = this.headChunks.length === 1 ? chunk : Buffer.concat(this.headChunks);
      const header = frameHeader(head);
      if (header === undefined) {
        this.headChunks = [head];
        return;
      }
      this.headChunks = [];
      this.segments = header.sizes.map((size) => new Uint8Array(size));
      this.segment = 0;
      this.filled = 0;
      this.finishSegments();  // segments of size 0
      chunk = head.subarray(header.headerBytes);
    }
  }

  /** Moves past filled segments; delivers the frame when its last one is full. */
  private finishSegments(): void {
    const segments = this.segments!;
    while (this.segment < segments.length && this.filled === segments[this.segment].length) {
      this.segment++;
      this.filled = 0;
    }
    if (this.segment === segments.length) {
      this.segments = undefined;
      this.deliver(segments.map((s) => s.buffer as ArrayBuffer));
    }
  }

  private fail(why: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(undefined);
    this.onClose(why);
  }
}
