#include "schema/read_ahead_message_reader.h"

#include <stdint.h>
#include <string.h>

#include <kj/debug.h>
#include <kj/io.h>

namespace refstore {

namespace {

// A message copied out of the read-ahead buffer (or read straight into its own array).
class OwnedMessageReader final: public capnp::MessageReader {
 public:
  OwnedMessageReader(capnp::ReaderOptions options, kj::Array<capnp::word> words,
                     kj::Array<kj::ArrayPtr<const capnp::word>> segments)
      : capnp::MessageReader(options), words(kj::mv(words)), segments(kj::mv(segments)) {}

  kj::ArrayPtr<const capnp::word> getSegment(capnp::uint id) override {
    return id < segments.size() ? segments[id] : nullptr;
  }

 private:
  kj::Array<capnp::word> words;
  kj::Array<kj::ArrayPtr<const capnp::word>> segments;
};

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the framing is read by memcpy: a big-endian host would need byte swapping");

uint32_t littleEndian32(const kj::byte* bytes) {
  uint32_t value;
  memcpy(&value, bytes, sizeof(value));
  return value;  // Cap'n Proto's framing is little-endian, as is every machine refstore runs on
}

// As capnp (readAfterFirstWord): a message has fewer segments than this. A malicious peer could
// otherwise make us allocate a huge segment table.
constexpr uint64_t kSegmentLimit = 512;

void checkSegmentCount(uint64_t segmentCount) {
  KJ_REQUIRE(segmentCount < kSegmentLimit, "Message has too many segments.", segmentCount);
}

}  // namespace

ReadAheadMessageReader::ReadAheadMessageReader(kj::AsyncInputStream& stream,
                                               kj::Maybe<kj::AsyncCapabilityStream&> fdStream)
    : stream(stream), fdStream(fdStream), buffer(kj::heapArray<kj::byte>(kBufferBytes)) {}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> ReadAheadMessageReader::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options) {
  // In a burst the next message is usually buffered whole already: take it without a read and
  // without a chain of continuations (each a heap-allocated promise node and an event-loop turn:
  // ~10 allocations per message that this path does not make).
  KJ_IF_MAYBE(framing, bufferedFraming()) {
    if (wholeBuffered(*framing)) {
      return kj::evalNow([&]() {  // a refused message rejects the promise, as on the slow path
        checkFraming(*framing, options);
        return kj::Maybe<capnp::MessageReaderAndFds>(takeBuffered(fdSpace, options, *framing));
      });
    }
  }
  // The first word: the segment count (minus one) and the first segment's size.
  return fill(sizeof(capnp::word))
      .then([this, fdSpace, options](bool any)
                -> kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> {
        if (!any) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);
        uint64_t segmentCount = uint64_t(littleEndian32(buffer.begin() + begin)) + 1;
        checkSegmentCount(segmentCount);  // before filling a table that might not fit the buffer
        return fill(headerBytesFor(segmentCount)).then([this, fdSpace, options](bool) {
          return readBody(fdSpace, options);
        });
      });
}

uint64_t ReadAheadMessageReader::headerBytesFor(uint64_t segmentCount) {
  // The count and one size per segment, in 32-bit words, padded to a whole 64-bit word.
  return (segmentCount / 2 + 1) * sizeof(capnp::word);
}

kj::Maybe<ReadAheadMessageReader::Framing> ReadAheadMessageReader::bufferedFraming() const {
  if (buffered() < sizeof(capnp::word)) return nullptr;
  const kj::byte* header = buffer.begin() + begin;
  uint64_t segmentCount = uint64_t(littleEndian32(header)) + 1;
  uint64_t headerBytes = headerBytesFor(segmentCount);
  if (buffered() < headerBytes) return nullptr;
  uint64_t bodyWords = 0;
  for (uint64_t i = 0; i < segmentCount; i++) bodyWords += littleEndian32(header + 4 + 4 * i);
  return Framing{segmentCount, size_t(headerBytes), bodyWords};
}

bool ReadAheadMessageReader::wholeBuffered(const Framing& framing) const {
  return (buffered() - framing.headerBytes) / sizeof(capnp::word) >= framing.bodyWords;
}

void ReadAheadMessageReader::setStallTimeout(kj::Timer& timer, kj::Duration timeout) {
  stallTimer = timer;
  stallTimeout = timeout;
}

template <typename T>
kj::Promise<T> ReadAheadMessageReader::withinStallTimeout(kj::Promise<T> read) {
  KJ_IF_MAYBE(timer, stallTimer) {
    return read.exclusiveJoin(timer->afterDelay(stallTimeout).then([this]() -> kj::Promise<T> {
      return KJ_EXCEPTION(DISCONNECTED, "the peer began a message and sent nothing more for ",
                          stallTimeout / kj::SECONDS, " s: closing the connection");
    }));
  }
  return kj::mv(read);
}

void ReadAheadMessageReader::checkFraming(const Framing& framing,
                                          capnp::ReaderOptions options) const {
  checkSegmentCount(framing.segmentCount);
  if (framing.bodyWords > maxMessageBytes / sizeof(capnp::word) ||
      framing.headerBytes + framing.bodyWords * sizeof(capnp::word) > maxMessageBytes) {
    KJ_FAIL_REQUIRE(kj::str("Message is too large for this connection: its header announces ",
                            framing.headerBytes + framing.bodyWords * sizeof(capnp::word),
                            " bytes, the limit is ", maxMessageBytes));
  }
  // As capnp does: refuse to allocate for a message the receiver could never traverse.
  KJ_REQUIRE(framing.bodyWords <= options.traversalLimitInWords,
             "Message is too large.  To increase the limit on the receiving end, see "
             "capnp::ReaderOptions.", framing.bodyWords);
  KJ_REQUIRE(framing.bodyWords <= SIZE_MAX / sizeof(capnp::word), "Message is too large.",
             framing.bodyWords);
}

template <typename SizeOf>
capnp::MessageReaderAndFds ReadAheadMessageReader::finishMessage(
    kj::Array<capnp::word> words, size_t segmentCount, SizeOf sizeOf, uint64_t start,
    uint64_t finish, kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options) {
  auto segments = kj::heapArray<kj::ArrayPtr<const capnp::word>>(segmentCount);
  size_t offset = 0;
  for (size_t i = 0; i < segmentCount; i++) {
    size_t size = sizeOf(i);
    segments[i] = words.slice(offset, offset + size);
    offset += size;
  }
  size_t fdCount = takeFds(start, finish, fdSpace);
  return capnp::MessageReaderAndFds{
      kj::heap<OwnedMessageReader>(options, kj::mv(words), kj::mv(segments)),
      fdSpace.slice(0, fdCount)};
}

capnp::MessageReaderAndFds ReadAheadMessageReader::takeBuffered(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options, const Framing& framing) {
  const kj::byte* header = buffer.begin() + begin;
  size_t bodyBytes = framing.bodyWords * sizeof(capnp::word);
  auto words = kj::heapArray<capnp::word>(framing.bodyWords);
  if (bodyBytes > 0) memcpy(words.begin(), header + framing.headerBytes, bodyBytes);
  uint64_t start = position;
  size_t length = framing.headerBytes + bodyBytes;
  begin += length;  // the header's bytes stay in place until the next read
  position += length;
  return finishMessage(
      kj::mv(words), framing.segmentCount,
      [header](size_t i) { return littleEndian32(header + 4 + 4 * i); }, start, start + length,
      fdSpace, options);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> ReadAheadMessageReader::readBody(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options) {
  Framing framing = KJ_ASSERT_NONNULL(bufferedFraming());  // the caller filled the header
  checkFraming(framing, options);
  size_t headerBytes = framing.headerBytes, bodyBytes = framing.bodyWords * sizeof(capnp::word);
  if (headerBytes + bodyBytes <= kBufferBytes) {
    // Small: all of it comes through the buffer (with whatever follows it).
    return fill(headerBytes + bodyBytes).then([this, fdSpace, options, framing](bool) {
      return kj::Maybe<capnp::MessageReaderAndFds>(takeBuffered(fdSpace, options, framing));
    });
  }
  // Big: take what is buffered, then read the rest straight into place. The segment sizes are
  // copied out first: the buffer is reused once this message is done.
  const kj::byte* header = buffer.begin() + begin;
  auto sizes = kj::heapArray<uint32_t>(framing.segmentCount);
  for (size_t i = 0; i < sizes.size(); i++) sizes[i] = littleEndian32(header + 4 + 4 * i);
  uint64_t start = position;
  uint64_t finish = start + headerBytes + bodyBytes;
  size_t have = buffered() - headerBytes;  // fill() never reads past a buffer's worth
  KJ_ASSERT(have < bodyBytes);
  // Room for what is here and as much again (at least a buffer's worth): the array grows with
  // the bytes that actually arrive.
  size_t capacityWords = kj::min(framing.bodyWords, (kj::max(2 * have, kBufferBytes) + 7) / 8);
  auto words = kj::heapArray<capnp::word>(capacityWords);
  memcpy(words.begin(), header + headerBytes, have);
  position += headerBytes + have;
  begin = end = 0;
  return readRest(kj::mv(words), have, bodyBytes)
      .then([this, fdSpace, options, start, finish, bodyBytes, have,
             sizes = kj::mv(sizes)](kj::Array<capnp::word> words) mutable {
        position += bodyBytes - have;
        size_t count = sizes.size();
        return kj::Maybe<capnp::MessageReaderAndFds>(finishMessage(
            kj::mv(words), count, [&sizes](size_t i) { return sizes[i]; }, start, finish,
            fdSpace, options));
      });
}

kj::Promise<kj::Array<capnp::word>> ReadAheadMessageReader::readRest(kj::Array<capnp::word> words,
                                                                    size_t have,
                                                                    size_t bodyBytes) {
  if (have == bodyBytes) return kj::mv(words);
  size_t capacity = words.size() * sizeof(capnp::word);
  if (have == capacity) {
    // Full: double it, keeping what arrived; once the peer has sent an eighth of the message,
    // make room for all of it. Memory stays within 16 times what arrived, and the copies add up
    // to a quarter of the message at most.
    size_t grown = 16 * capacity >= bodyBytes ? bodyBytes : 2 * capacity;
    auto bigger = kj::heapArray<capnp::word>(grown / sizeof(capnp::word));
    memcpy(bigger.begin(), words.begin(), have);
    words = kj::mv(bigger);
    capacity = grown;
  }
  kj::byte* into = reinterpret_cast<kj::byte*>(words.begin()) + have;
  auto read = withinStallTimeout(stream.tryRead(into, 1, capacity - have));
  return read.then([this, words = kj::mv(words), have, bodyBytes](size_t n) mutable
                   -> kj::Promise<kj::Array<capnp::word>> {
    if (n == 0) return KJ_EXCEPTION(DISCONNECTED, "Premature EOF.");
    return readRest(kj::mv(words), have + n, bodyBytes);
  });
}

kj::Promise<bool> ReadAheadMessageReader::fill(size_t bytes) {
  KJ_ASSERT(bytes <= kBufferBytes);
  if (buffered() >= bytes) return true;
  // Between messages a peer may stay silent for as long as it likes; within one, not.
  auto read = buffered() == 0 ? readOnce() : withinStallTimeout(readOnce());
  return read.then([this, bytes](size_t n) -> kj::Promise<bool> {
    if (n == 0) {
      if (buffered() == 0) return false;  // a clean end, between messages
      return KJ_EXCEPTION(DISCONNECTED, "Premature EOF.");
    }
    return fill(bytes);
  });
}

kj::Promise<size_t> ReadAheadMessageReader::readOnce() {
  if (begin > 0) {
    memmove(buffer.begin(), buffer.begin() + begin, buffered());
    end -= begin;
    begin = 0;
  }
  ++reads;
  kj::byte* space = buffer.begin() + end;
  size_t spaceBytes = kBufferBytes - end;
  KJ_IF_MAYBE(capabilities, fdStream) {
    // minBytes 1: one recvmsg per call, so the fds it returns are attributed to its bytes only.
    // One read at a time, so one buffer serves them all; each read's fds are moved out of it.
    return capabilities->tryReadWithFds(space, 1, spaceBytes, fdBuffer, kMaxFdsPerRead)
        .then([this](kj::AsyncCapabilityStream::ReadResult result) {
          uint64_t readStart = position + buffered();
          end += result.byteCount;
          if (result.capCount > 0) {
            auto kept = kj::heapArrayBuilder<kj::AutoCloseFd>(result.capCount);
            for (size_t i = 0; i < result.capCount; i++) kept.add(kj::mv(fdBuffer[i]));
            received.push_back(ReceivedFds{readStart, position + buffered(), kept.finish()});
          }
          return result.byteCount;
        });
  }
  return stream.tryRead(space, 1, spaceBytes).then([this](size_t n) {
    end += n;
    return n;
  });
}

size_t ReadAheadMessageReader::takeFds(uint64_t start, uint64_t finish,
                                       kj::ArrayPtr<kj::AutoCloseFd> fdSpace) {
  // Reads whose fds no message claimed (the peer broke the one-write-per-fd-message rule):
  // their fds are closed.
  while (!received.empty() && received.front().endPosition <= start) received.pop_front();
  if (received.empty()) return 0;
  ReceivedFds& front = received.front();
  // The message owns the read's fds if it is the last to start within the read's bytes.
  if (front.endPosition > finish) return 0;  // a later message starts within that read
  if (front.startPosition > start) {
    received.pop_front();  // the read lay inside this message: no message owns them
    return 0;
  }
  size_t count = kj::min(front.fds.size(), fdSpace.size());
  for (size_t i = 0; i < count; i++) fdSpace[i] = kj::mv(front.fds[i]);
  received.pop_front();  // any beyond fdSpace are closed
  return count;
}

}  // namespace refstore
