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

}  // namespace

ReadAheadMessageReader::ReadAheadMessageReader(kj::AsyncInputStream& stream,
                                               kj::Maybe<kj::AsyncCapabilityStream&> fdStream)
    : stream(stream), fdStream(fdStream), buffer(kj::heapArray<kj::byte>(kBufferBytes)) {}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> ReadAheadMessageReader::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options) {
  // In a burst the next message is usually buffered whole already: take it without a read and
  // without a chain of continuations (each a heap-allocated promise node and an event-loop turn:
  // ~10 allocations per message that this path does not make).
  KJ_IF_MAYBE(framing, bufferedFraming(options)) {
    if (buffered() >= framing->headerBytes + framing->bodyBytes) {
      return kj::Maybe<capnp::MessageReaderAndFds>(takeBuffered(fdSpace, options, *framing));
    }
  }
  // The first word: the segment count (minus one) and the first segment's size.
  return fill(sizeof(capnp::word))
      .then([this, fdSpace, options](bool any)
                -> kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> {
        if (!any) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);
        uint64_t segmentCount = uint64_t(littleEndian32(buffer.begin() + begin)) + 1;
        KJ_REQUIRE(segmentCount < kSegmentLimit, "Message has too many segments.",
                   segmentCount);
        // The count and one size per segment, in 32-bit words, padded to a whole 64-bit word.
        size_t headerBytes = (segmentCount / 2 + 1) * sizeof(capnp::word);
        return fill(headerBytes).then([this, fdSpace, options, segmentCount, headerBytes](bool) {
          return readBody(fdSpace, options, segmentCount, headerBytes);
        });
      });
}

kj::Maybe<ReadAheadMessageReader::Framing> ReadAheadMessageReader::bufferedFraming(
    capnp::ReaderOptions options) const {
  if (buffered() < sizeof(capnp::word)) return nullptr;
  const kj::byte* header = buffer.begin() + begin;
  uint64_t segmentCount = uint64_t(littleEndian32(header)) + 1;
  if (segmentCount >= kSegmentLimit) return nullptr;  // the slow path reports it
  size_t headerBytes = (segmentCount / 2 + 1) * sizeof(capnp::word);
  if (buffered() < headerBytes) return nullptr;
  uint64_t totalWords = 0;
  for (uint32_t i = 0; i < segmentCount; i++) totalWords += littleEndian32(header + 4 + 4 * i);
  if (totalWords > options.traversalLimitInWords) return nullptr;  // the slow path reports it
  if (totalWords > kBufferBytes / sizeof(capnp::word)) return nullptr;  // bigger than a buffer
  return Framing{uint32_t(segmentCount), headerBytes, size_t(totalWords) * sizeof(capnp::word)};
}

capnp::MessageReaderAndFds ReadAheadMessageReader::takeBuffered(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options, Framing framing) {
  const kj::byte* header = buffer.begin() + begin;
  auto words = kj::heapArray<capnp::word>(framing.bodyBytes / sizeof(capnp::word));
  if (framing.bodyBytes > 0) memcpy(words.begin(), header + framing.headerBytes, framing.bodyBytes);
  auto segments = kj::heapArray<kj::ArrayPtr<const capnp::word>>(framing.segmentCount);
  size_t offset = 0;
  for (uint32_t i = 0; i < framing.segmentCount; i++) {
    size_t size = littleEndian32(header + 4 + 4 * i);
    segments[i] = words.slice(offset, offset + size);
    offset += size;
  }
  uint64_t start = position;
  size_t length = framing.headerBytes + framing.bodyBytes;
  begin += length;
  position += length;
  size_t fdCount = takeFds(start, start + length, fdSpace);
  return capnp::MessageReaderAndFds{
      kj::heap<OwnedMessageReader>(options, kj::mv(words), kj::mv(segments)),
      fdSpace.slice(0, fdCount)};
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> ReadAheadMessageReader::readBody(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options, uint32_t segmentCount,
    size_t headerBytes) {
  const kj::byte* header = buffer.begin() + begin;
  auto sizes = kj::heapArray<uint32_t>(segmentCount);
  uint64_t totalWords = 0;
  for (uint32_t i = 0; i < segmentCount; i++) {
    sizes[i] = littleEndian32(header + 4 + 4 * i);
    totalWords += sizes[i];
  }
  // As capnp does: refuse to allocate for a message the receiver could never traverse.
  KJ_REQUIRE(totalWords <= options.traversalLimitInWords,
             "Message is too large.  To increase the limit on the receiving end, see "
             "capnp::ReaderOptions.", totalWords);
  KJ_REQUIRE(totalWords <= SIZE_MAX / sizeof(capnp::word), "Message is too large.", totalWords);
  size_t bodyBytes = totalWords * sizeof(capnp::word);

  if (headerBytes + bodyBytes <= kBufferBytes) {
    // Small: all of it comes through the buffer (with whatever follows it).
    Framing framing{segmentCount, headerBytes, bodyBytes};
    return fill(headerBytes + bodyBytes).then([this, fdSpace, options, framing](bool) {
      return kj::Maybe<capnp::MessageReaderAndFds>(takeBuffered(fdSpace, options, framing));
    });
  }
  // Big: take what is buffered, then read the rest straight into place.
  uint64_t start = position;
  uint64_t finish = start + headerBytes + bodyBytes;
  auto words = kj::heapArray<capnp::word>(totalWords);
  size_t have = buffered() - headerBytes;  // fill() never reads past a buffer's worth
  KJ_ASSERT(have < bodyBytes);
  memcpy(words.begin(), buffer.begin() + begin + headerBytes, have);
  position += headerBytes + have;
  begin = end = 0;
  kj::byte* rest = reinterpret_cast<kj::byte*>(words.begin()) + have;
  size_t restBytes = bodyBytes - have;
  return stream.read(rest, restBytes)
      .then([this, fdSpace, options, start, finish, restBytes, words = kj::mv(words),
             sizes = kj::mv(sizes)]() mutable {
        position += restBytes;
        auto segments = kj::heapArray<kj::ArrayPtr<const capnp::word>>(sizes.size());
        size_t offset = 0;
        for (size_t i = 0; i < sizes.size(); i++) {
          segments[i] = words.slice(offset, offset + sizes[i]);
          offset += sizes[i];
        }
        size_t fdCount = takeFds(start, finish, fdSpace);
        capnp::MessageReaderAndFds result{
            kj::heap<OwnedMessageReader>(options, kj::mv(words), kj::mv(segments)),
            fdSpace.slice(0, fdCount)};
        return kj::Maybe<capnp::MessageReaderAndFds>(kj::mv(result));
      });
}

kj::Promise<bool> ReadAheadMessageReader::fill(size_t bytes) {
  KJ_ASSERT(bytes <= kBufferBytes);
  if (buffered() >= bytes) return true;
  return readOnce().then([this, bytes](size_t n) -> kj::Promise<bool> {
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
