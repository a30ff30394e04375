#include "schema/batching_message_stream.h"

#include <fcntl.h>
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
    : stream(stream), fdStream(fdStream), reader(stream, fdStream) {}

BatchingMessageStream::~BatchingMessageStream() noexcept(false) {
  if (pendingMessages > 0) unlist(this);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BatchingMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word>) {
  if (unsent > maxUnsentBytes) {
    // The peer is not reading our messages: read none of its own until it catches up.
    auto paf = kj::newPromiseAndFulfiller<void>();
    drained = kj::mv(paf.fulfiller);
    return paf.promise.then([this, fdSpace, options]() {
      return reader.tryReadMessage(fdSpace, options);
    });
  }
  return reader.tryReadMessage(fdSpace, options);
}

void BatchingMessageStream::wrote(uint64_t batchedBytes) {
  unsent -= kj::min(unsent, batchedBytes);
  if (unsent <= maxUnsentBytes / 2) {
    KJ_IF_MAYBE(waiting, drained) {
      (*waiting)->fulfill();
      drained = nullptr;
    }
  }
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
  if (fds.size() > 0 && fdStream != nullptr) return writeWithFds(fds, segments);
  return enqueue([this, segments, bytes]() {
    ++messages;
    return capnp::writeMessage(stream, segments).then([this, bytes]() {
      KJ_IF_MAYBE(callback, onLargeMessageWritten) { (*callback)(bytes); }
    });
  });
}

kj::Promise<void> BatchingMessageStream::writeWithFds(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  auto copies = kj::heapArray<kj::AutoCloseFd>(fds.size());
  auto numbers = kj::heapArray<int>(fds.size());
  for (size_t i = 0; i < fds.size(); i++) {
    int copy;
    KJ_SYSCALL(copy = fcntl(fds[i], F_DUPFD_CLOEXEC, 0));
    copies[i] = kj::AutoCloseFd(copy);
    numbers[i] = copy;
  }
  auto& capabilities = KJ_ASSERT_NONNULL(fdStream);
  return enqueue([this, &capabilities, segments, copies = kj::mv(copies),
                  numbers = kj::mv(numbers)]() mutable {
    ++messages;
    return capnp::writeMessage(capabilities, numbers, segments)
        .attach(kj::mv(copies), kj::mv(numbers));
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
  return enqueue([this, batch, bytes]() {
    messages += batch.size();
    return capnp::writeMessages(stream, batch).then([this, bytes]() {
      KJ_IF_MAYBE(callback, onLargeMessageWritten) { (*callback)(bytes); }
    });
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
  size_t before = pending->getArray().size();
  capnp::writeMessage(*pending, segments);
  unsent += pending->getArray().size() - before;
  if (++pendingMessages == 1) streamsWithPending().push_back(this);
  if (pending->getArray().size() >= kFlushAtBytes) {
    flushPending();
    return;
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
  if (pendingMessages == 0) return;
  unlist(this);
  size_t count = pendingMessages;
  pendingMessages = 0;
  enqueue([this, buffer = kj::mv(pending), count]() mutable {
    messages += count;
    auto bytes = buffer->getArray();
    size_t size = bytes.size();
    return stream.write(bytes.begin(), size).attach(kj::mv(buffer)).then([this, size]() {
      wrote(size);
    });
  });
}

kj::Promise<void> BatchingMessageStream::enqueue(kj::Function<kj::Promise<void>()> write) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  jobs.push_back(Job{kj::mv(write), kj::mv(paf.fulfiller)});
  startNext();
  return kj::mv(paf.promise);
}

void BatchingMessageStream::startNext() {
  if (writing || jobs.empty()) return;
  writing = true;
  kj::Promise<void> write = nullptr;
  KJ_IF_MAYBE(e, failure) {
    write = kj::cp(*e);
  } else {
    ++writes;
    write = kj::evalNow([this]() { return jobs.front().write(); });
  }
  // Each write's continuation starts the next one: no chain grows, however many wait.
  flushes.add(write.then(
      [this]() {
        Job job = kj::mv(jobs.front());
        jobs.pop_front();
        writing = false;
        job.done->fulfill();
        startNext();
      },
      [this](kj::Exception&& e) {
        if (failure == nullptr) {
          failure = kj::cp(e);
          // Writes that already reported success are lost: make the RPC system notice by
          // ending its reads, as capnp does for a failed write.
          stream.abortRead();
          KJ_IF_MAYBE(waiting, drained) {  // a read held back for unsent bytes ends too
            (*waiting)->reject(kj::cp(e));
            drained = nullptr;
          }
        }
        Job job = kj::mv(jobs.front());
        jobs.pop_front();
        writing = false;
        job.done->reject(kj::mv(e));
        startNext();  // the rest fail with the same error
      }));
}

void BatchingMessageStream::throwIfFailed() {
  KJ_IF_MAYBE(e, failure) { kj::throwFatalException(kj::cp(*e)); }
}

}  // namespace refstore
