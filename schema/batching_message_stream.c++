#include "schema/batching_message_stream.h"

#include <sys/socket.h>

#include <algorithm>
#include <vector>

#include <capnp/serialize.h>
#include <kj/debug.h>

namespace refstore {

namespace {

// This thread's streams that hold pending messages (for flushAll).
std::vector<BatchingMessageStream*>& streamsWithPending() {
  thread_local std::vector<BatchingMessageStream*> streams;
  return streams;
}

void unlist(BatchingMessageStream* stream) {
  auto& streams = streamsWithPending();
  streams.erase(std::remove(streams.begin(), streams.end(), stream), streams.end());
}

}  // namespace

void BatchingMessageStream::flushAll() {
  auto streams = streamsWithPending();  // a copy: flushing unlists
  for (auto stream: streams) stream->flushPending();
}

BatchingMessageStream::BatchingMessageStream(kj::AsyncIoStream& stream,
                                             kj::Maybe<kj::AsyncCapabilityStream&> fdStream)
    : stream(stream), fdStream(fdStream) {}

BatchingMessageStream::~BatchingMessageStream() noexcept(false) {
  if (listed) unlist(this);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BatchingMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word> scratchSpace) {
  KJ_IF_MAYBE(capabilities, fdStream) {
    return capnp::tryReadMessage(*capabilities, fdSpace, options, scratchSpace);
  }
  return capnp::tryReadMessage(stream, options, scratchSpace)
      .then([](kj::Maybe<kj::Own<capnp::MessageReader>> reader)
                -> kj::Maybe<capnp::MessageReaderAndFds> {
        KJ_IF_MAYBE(r, reader) { return capnp::MessageReaderAndFds{kj::mv(*r), nullptr}; }
        return nullptr;
      });
}

kj::Promise<void> BatchingMessageStream::writeMessage(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  throwIfFailed();
  size_t bytes = capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
  if (fds.size() == 0 && bytes <= kMaxBatchedBytes) {
    addPending(segments);
    return kj::READY_NOW;
  }
  flushPending();  // what was sent before goes first
  return enqueue([this, fds, segments]() {
    ++messages;
    KJ_IF_MAYBE(capabilities, fdStream) {
      if (fds.size() > 0) return capnp::writeMessage(*capabilities, fds, segments);
    }
    return capnp::writeMessage(stream, segments);
  });
}

kj::Promise<void> BatchingMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> batch) {
  throwIfFailed();
  size_t bytes = 0;
  for (auto& segments: batch) {
    bytes += capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
  }
  if (bytes <= kMaxBatchedBytes) {
    for (auto& segments: batch) addPending(segments);
    return kj::READY_NOW;
  }
  flushPending();
  return enqueue([this, batch]() {
    messages += batch.size();
    return capnp::writeMessages(stream, batch);
  });
}

kj::Maybe<int> BatchingMessageStream::getSendBufferSize() {
  // A hint for capnp's stream flow control; streams that are not sockets have none.
  int size = 0;
  kj::uint length = sizeof(size);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
                stream.getsockopt(SOL_SOCKET, SO_SNDBUF, &size, &length);
              })) {
    return nullptr;
  }
  return size;
}

kj::Promise<void> BatchingMessageStream::end() {
  flushPending();
  return enqueue([this]() -> kj::Promise<void> {
    stream.shutdownWrite();
    return kj::READY_NOW;
  });
}

void BatchingMessageStream::addPending(
    kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  if (pending.get() == nullptr) pending = kj::heap<kj::VectorOutputStream>();
  capnp::writeMessage(*pending, segments);
  ++pendingMessages;
  if (!listed) {
    listed = true;
    streamsWithPending().push_back(this);
  }
  if (!flushScheduled) {
    flushScheduled = true;
    flushes.add(kj::evalLast([this]() {
      flushScheduled = false;
      flushPending();
    }));
  }
}

void BatchingMessageStream::flushPending() {
  if (listed) {
    listed = false;
    unlist(this);
  }
  if (pendingMessages == 0) return;
  size_t count = pendingMessages;
  pendingMessages = 0;
  enqueue([this, buffer = kj::mv(pending), count]() mutable {
    messages += count;
    auto bytes = buffer->getArray();
    return stream.write(bytes.begin(), bytes.size()).attach(kj::mv(buffer));
  });
}

kj::Promise<void> BatchingMessageStream::enqueue(kj::Function<kj::Promise<void>()> write) {
  auto done = writeQueue
                  .then([this, write = kj::mv(write)]() mutable {
                    throwIfFailed();
                    ++writes;
                    return write();
                  })
                  .catch_([this](kj::Exception&& e) -> kj::Promise<void> {
                    if (failure == nullptr) {
                      failure = kj::cp(e);
                      // Writes that already reported success are lost: make the RPC system
                      // notice by ending its reads, as capnp does for a failed write.
                      stream.abortRead();
                    }
                    return kj::mv(e);
                  })
                  .fork();
  writeQueue = done.addBranch().catch_([](kj::Exception&&) {}).eagerlyEvaluate(nullptr);
  return done.addBranch();
}

void BatchingMessageStream::throwIfFailed() {
  KJ_IF_MAYBE(e, failure) { kj::throwFatalException(kj::cp(*e)); }
}

}  // namespace refstore
