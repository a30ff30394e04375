// The transport under both ends of a refstore connection: Cap'n Proto messages over a byte
// stream, with small outgoing messages coalesced into one write per event-loop turn.
//
// Why: capnp 0.9's TwoPartyVatNetwork writes every message with its own system call. One
// pipelined put-and-view costs the client seven of them (two calls, two Finishes and three
// Releases) and the daemon two; with 16 pairs in flight that was ~120 writev calls where one
// would do, and on the 2-vCPU CI machine system calls were most of the client's CPU time
// (BENCHMARKS.md, "Small operations"). Cap'n Proto 1.0 batches the same way.
//
// How: a message of at most kMaxBatchedBytes without file descriptors is copied, in wire format,
// into a pending buffer, and its write reports success at once; the buffer goes out in one write
// when the event loop has nothing else to run (kj::evalLast), i.e. just before the thread would
// poll or sleep. Bigger messages (bulk data) and messages carrying file descriptors are written
// from the caller's memory as before, after everything pending: order is always kept, and a
// message with fds always starts its own sendmsg, so the receiver (which reads exactly one
// message's bytes at a time) gets the fds with the right message.
//
// Failure: a write that fails after reporting success cannot fail its caller any more; instead
// the stream remembers the error, fails every later write with it, and aborts reading, so the
// RPC system sees the connection as broken (as capnp itself does for failed writes).
//
// Reading: incoming messages come through a ReadAheadMessageReader (one system call for a burst
// of messages instead of two per message), on both ends.
//
// A task that keeps re-arming itself with kj::evalLast (refstored's busy-polling spinner) would
// starve the streams' own evalLast flushes, since KJ runs evalLast callbacks newest first: such
// a task calls flushAll() on each of its turns instead.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/function.h>

#include <deque>
#include <kj/async-io.h>
#include <kj/io.h>

#include "schema/read_ahead_message_reader.h"

namespace refstore {

class BatchingMessageStream final: public capnp::MessageStream {
 public:
  // Messages larger than this are written straight from the caller's memory (no copy).
  static constexpr size_t kMaxBatchedBytes = 16 * 1024;
  // A batch this large is written at once, without waiting for the loop to go idle: a peer
  // whose requests keep the loop busy must not hold back every reply, or grow the buffer
  // without bound.
  static constexpr size_t kFlushAtBytes = 64 * 1024;

  // `stream` must outlive this object. Pass the same stream as `fdStream` when it can carry
  // file descriptors (a Unix socket), to send and receive them.
  explicit BatchingMessageStream(kj::AsyncIoStream& stream,
                                 kj::Maybe<kj::AsyncCapabilityStream&> fdStream = nullptr);
  ~BatchingMessageStream() noexcept(false);
  KJ_DISALLOW_COPY(BatchingMessageStream);

  // Implements capnp::MessageStream.
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments)
      override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  kj::Promise<void> end() override;

  // Sends the pending messages of every stream on this thread now (see the file comment).
  static void flushAll();

  // Incoming limits (see ReadAheadMessageReader): the largest message accepted, and how long a
  // peer may stall in the middle of one.
  void setMaxIncomingBytes(uint64_t bytes) { reader.setMaxMessageBytes(bytes); }
  void setStallTimeout(kj::Timer& timer, kj::Duration timeout) {
    reader.setStallTimeout(timer, timeout);
  }
  // Backpressure for a peer that does not read what we send: while more than `bytes` of batched
  // messages wait to be written, stop reading its messages (so it cannot make us produce more)
  // until half of them are out. Unlimited by default.
  void setMaxUnsentBytes(uint64_t bytes) { maxUnsentBytes = bytes; }
  // Called with the size of every message written from the caller's memory (too big to batch),
  // once it is written.
  void setOnLargeMessageWritten(kj::Function<void(size_t)> callback) {
    onLargeMessageWritten = kj::mv(callback);
  }
  // Bytes of batched messages not yet written (for tests and the limit above).
  uint64_t unsentBytes() const { return unsent; }

  // How many writes went to the stream, and how many messages they carried (for tests).
  uint64_t streamWrites() const { return writes; }
  uint64_t messagesWritten() const { return messages; }

 private:
  // Appends one message, in wire format, to `pending`; schedules the flush.
  void addPending(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);
  // Queues the pending buffer's write (if any) behind the writes already queued.
  void flushPending();
  // Writes a message with fds after everything queued, from duplicates of the fds: the
  // caller's may be closed before the write happens (a Finish can release the capability).
  // The receiver's ReadAheadMessageReader depends on this message starting a write of its own
  // (after flushPending) and being the only message in it: that is how it knows which message
  // the fds of a read belong to. Never coalesce anything into or before an fd message's write.
  kj::Promise<void> writeWithFds(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);
  // Runs `write` after every write queued before it; resolves when it is done. Writes wait in
  // `jobs`, not in a chain of promises: thousands of queued writes (a peer that stops reading)
  // would otherwise make a promise chain thousands of links deep, whose destruction overflows
  // the stack.
  kj::Promise<void> enqueue(kj::Function<kj::Promise<void>()> write);
  // Starts the oldest queued write unless one is running.
  void startNext();
  void throwIfFailed();

  kj::AsyncIoStream& stream;
  kj::Maybe<kj::AsyncCapabilityStream&> fdStream;
  ReadAheadMessageReader reader;

  kj::Own<kj::VectorOutputStream> pending;
  size_t pendingMessages = 0;    // while non-zero, in this thread's list (streamsWithPending)
  bool flushScheduled = false;  // an evalLast flush is armed

  struct Job {
    kj::Function<kj::Promise<void>()> write;
    kj::Own<kj::PromiseFulfiller<void>> done;
  };
  std::deque<Job> jobs;  // the front one is being written while `writing`
  bool writing = false;
  kj::Maybe<kj::Exception> failure;  // the first failed write's error

  uint64_t writes = 0;
  uint64_t messages = 0;

  uint64_t unsent = 0;  // batched bytes pending or queued, not yet written
  uint64_t maxUnsentBytes = UINT64_MAX;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> drained;  // a read waiting for unsent to fall
  kj::Maybe<kj::Function<void(size_t)>> onLargeMessageWritten;
  // Called as batched bytes are written: lets a read waiting on maxUnsentBytes go on.
  void wrote(uint64_t batchedBytes);

  class ErrorLogger final: public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // failures are recorded in `failure`
  } errorLogger;
  kj::TaskSet flushes{errorLogger};  // the scheduled evalLast flush and the running write
};

}  // namespace refstore
