// Reads Cap'n Proto messages from a byte stream with read-ahead: one system call brings in as
// many messages as have arrived, instead of two per message.
//
// Why: capnp 0.9 reads every message with two system calls (its first word, then the rest), so
// a client receiving the replies to 16 pipelined puts and 16 views made 64 recvmsg calls where
// one would do. Both ends read through it (BatchingMessageStream).
//
// How: reads of up to kBufferBytes go into a buffer; each message is parsed out of it (segment
// table, then segments) and copied into its own word-aligned array, because the RPC system may
// keep a message long after the buffer has moved on. A message too big for the buffer has its
// remainder read straight into that array, which grows (doubling) as bytes arrive: memory
// follows what the peer actually sent, never what its segment table claims (a peer announcing
// a 64 MiB message and sending nothing costs one buffer, not 64 MiB).
//
// Limits (the daemon's defence against hostile peers): a message larger than
// setMaxMessageBytes() is refused by its header, before anything is allocated for it; and with
// setStallTimeout(), a peer that starts a message and then sends nothing more for that long
// gets the read failed (DISCONNECTED), so a half-sent frame cannot hold a connection forever.
// An idle peer between messages is never timed out.
//
// File descriptors: the kernel hands out a message's fds with the read that brings the first
// bytes of the write that carried them, and ends that read there. The sender (a
// BatchingMessageStream, or capnp's own stream) starts every message that carries fds with a
// write of its own, so the fds of a read belong to the last message that starts within that
// read's bytes. Each read is one recvmsg, so this attribution is exact.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>
#include <kj/io.h>
#include <kj/timer.h>

#include <deque>

namespace refstore {

class ReadAheadMessageReader {
 public:
  static constexpr size_t kBufferBytes = 64 * 1024;
  // The most fds accepted with one read (a message carries at most a few Segment fds). Extra
  // fds in a read are closed.
  static constexpr size_t kMaxFdsPerRead = 8;

  // `stream` must outlive this object. With `fdStream` (the same stream, when it is a Unix
  // socket) file descriptors are received too.
  explicit ReadAheadMessageReader(kj::AsyncInputStream& stream,
                                  kj::Maybe<kj::AsyncCapabilityStream&> fdStream = nullptr);
  KJ_DISALLOW_COPY(ReadAheadMessageReader);

  // The next message and its fds (moved into `fdSpace`; fds beyond its size are closed), or
  // null at a clean end of stream. Throws DISCONNECTED on an end of stream inside a message, and
  // FAILED on a malformed segment table or a message over `options.traversalLimitInWords`.
  // One call at a time.
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options);

  // How many reads went to the stream (for tests).
  uint64_t streamReads() const { return reads; }

  // Refuse messages over `bytes` (segment table and segments), in addition to the caller's
  // ReaderOptions. May be changed between messages (e.g. raised once a peer authenticates).
  void setMaxMessageBytes(uint64_t bytes) { maxMessageBytes = bytes; }
  // Fail a read that waits longer than `timeout` for the rest of a message already begun.
  void setStallTimeout(kj::Timer& timer, kj::Duration timeout);

 private:
  struct ReceivedFds {
    // The stream positions of the bytes of the read that brought them: [start, end).
    uint64_t startPosition;
    uint64_t endPosition;
    kj::Array<kj::AutoCloseFd> fds;
  };

  // A message's framing, from its segment table: the segment count, the table's bytes
  // (padded), and the words of all segments together.
  struct Framing {
    uint64_t segmentCount;
    size_t headerBytes;
    uint64_t bodyWords;
  };
  static uint64_t headerBytesFor(uint64_t segmentCount);
  // The framing of the message at the front of the buffer, once its segment table is buffered
  // (unchecked: see checkFraming); null before.
  kj::Maybe<Framing> bufferedFraming() const;
  // Whether all of that message is buffered.
  bool wholeBuffered(const Framing& framing) const;
  // Refuses, by name, what capnp refuses: too many segments, more words than the receiver may
  // traverse (or than memory can address); and messages over maxMessageBytes.
  void checkFraming(const Framing& framing, capnp::ReaderOptions options) const;
  // Takes the message at the front of the buffer, all of which is buffered.
  capnp::MessageReaderAndFds takeBuffered(kj::ArrayPtr<kj::AutoCloseFd> fdSpace,
                                          capnp::ReaderOptions options, const Framing& framing);
  // The message whose segments (sizeOf(i) words each) are `words`, with the fds of the reads
  // that brought stream positions [start, finish).
  template <typename SizeOf>
  capnp::MessageReaderAndFds finishMessage(kj::Array<capnp::word> words, size_t segmentCount,
                                           SizeOf sizeOf, uint64_t start, uint64_t finish,
                                           kj::ArrayPtr<kj::AutoCloseFd> fdSpace,
                                           capnp::ReaderOptions options);
  // Reads until at least `bytes` are buffered; false at a clean end of stream with nothing
  // buffered, DISCONNECTED at an end of stream after some.
  kj::Promise<bool> fill(size_t bytes);
  // One read into the buffer's free space (compacting it first), keeping its fds.
  kj::Promise<size_t> readOnce();
  // `read`, failed with DISCONNECTED if it takes longer than the stall timeout (if any).
  template <typename T>
  kj::Promise<T> withinStallTimeout(kj::Promise<T> read);
  // Reads the rest of a big message (`have` of `bodyBytes` bytes are in `words`, whose size is
  // its capacity so far) straight into place, growing it as bytes arrive.
  kj::Promise<kj::Array<capnp::word>> readRest(kj::Array<capnp::word> words, size_t have,
                                               size_t bodyBytes);
  // Collects the message whose segment table is buffered (the slow path: it may need more
  // reads, or a message bigger than the buffer read straight into place).
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> readBody(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options);
  // Moves the fds that belong to the message at stream positions [start, end) into `fdSpace`;
  // returns how many.
  size_t takeFds(uint64_t start, uint64_t end, kj::ArrayPtr<kj::AutoCloseFd> fdSpace);
  size_t buffered() const { return end - begin; }

  kj::AsyncInputStream& stream;
  kj::Maybe<kj::AsyncCapabilityStream&> fdStream;
  kj::Array<kj::byte> buffer;
  size_t begin = 0, end = 0;      // unread bytes are buffer[begin, end)
  uint64_t position = 0;          // stream position of buffer[begin]
  std::deque<ReceivedFds> received;
  kj::AutoCloseFd fdBuffer[kMaxFdsPerRead];  // where each read's fds land (empty between reads)
  uint64_t reads = 0;
  uint64_t maxMessageBytes = UINT64_MAX;
  kj::Maybe<kj::Timer&> stallTimer;
  kj::Duration stallTimeout = 0 * kj::SECONDS;
};

}  // namespace refstore
