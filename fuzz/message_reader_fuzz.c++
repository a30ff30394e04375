// Fuzzes ReadAheadMessageReader (schema/read_ahead_message_reader.h), which both ends use to
// frame the Cap'n Proto messages they read from a socket -- on the daemon's side, bytes any
// local process may send. The input describes writes to a real Unix socketpair, some with
// file descriptors (memfds) attached; the reader reads them back, and the result is compared
// with capnp's own reader (capnp::InputStreamMessageReader) of the same bytes:
//   - the same messages, segment for segment and word for word, in the same order;
//   - then a clean end exactly where capnp ends cleanly, and an exception where capnp throws
//     (too many segments, over the traversal limit, the stream ending inside a message);
//   - a write with fds that starts a message, and inside which no other message starts, hands
//     that message exactly its fds (as many as fit its fdSpace), in order;
//   - every fd received is one that was sent, and none is left open afterwards.
// One deliberate difference: capnp reads a first word of 0xffffffff as a message of zero
// segments (its count wraps); ours refuses it as too many segments. No sender writes one.
//
// Input: one byte of options (traversal limit, whether fds are read, fdSpace size), then
// records, each appended to the current write or starting a new one:
//   record = [h] ...   h bits 0-1: 0 literal bytes ([n] then n bytes); 1 filler ([n:u16]
//   [fill]: 8n bytes of fill); 2 a segment table ([k] then k+1 sizes of [u16] words); 3 a
//   whole message ([k] then k+1 segments of [n] zero words); bits 2-3: fds sent with a new
//   write (0-3); bit 4: append to the previous write instead.
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/io.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "schema/read_ahead_message_reader.h"

using refstore::ReadAheadMessageReader;
using refstore::fuzz::FuzzInput;

namespace {

constexpr size_t kMaxStreamBytes = 1 << 20;
constexpr size_t kMaxFds = 24;
constexpr size_t kMaxFdSpace = 3;

struct Write {
  std::vector<kj::byte> bytes;
  std::vector<kj::AutoCloseFd> fds;
  std::vector<ino_t> inodes;
  uint64_t start = 0;  // stream position of its first byte
};

struct Message {
  std::vector<std::string> segments;  // each segment's bytes
  uint64_t start = 0, end = 0;  // stream positions (reference only)
  std::vector<ino_t> fdInodes;  // (ours only)
};

struct Outcome {
  std::vector<Message> messages;
  bool failed = false;    // ended with an exception rather than a clean end of stream
  uint64_t failedAt = 0;  // (reference only) where the message it failed on starts
};

std::string bytesOf(kj::ArrayPtr<const capnp::word> segment) {
  auto bytes = segment.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

ino_t inodeOf(int fd) {
  struct stat st;
  KJ_SYSCALL(fstat(fd, &st));
  return st.st_ino;
}

size_t openFds() {
  size_t count = 0;
  DIR* dir = opendir("/proc/self/fd");
  KJ_ASSERT(dir != nullptr);
  while (readdir(dir) != nullptr) count++;
  closedir(dir);
  return count;
}

void appendWord32(std::vector<kj::byte>& out, uint32_t value) {
  kj::byte bytes[4];
  memcpy(bytes, &value, 4);  // little-endian, as the framing is (see read_ahead_message_reader)
  out.insert(out.end(), bytes, bytes + 4);
}

void appendSegmentTable(std::vector<kj::byte>& out, const std::vector<uint32_t>& sizes) {
  appendWord32(out, uint32_t(sizes.size() - 1));
  for (uint32_t size: sizes) appendWord32(out, size);
  if (sizes.size() % 2 == 0) appendWord32(out, 0);  // padding to a whole word
}

std::vector<Write> decodeWrites(FuzzInput& input) {
  std::vector<Write> writes;
  size_t total = 0, fds = 0;
  while (!input.empty() && total < kMaxStreamBytes) {
    uint8_t h = input.byte();
    if (writes.empty() || !(h & 0x10)) {
      writes.emplace_back();
      writes.back().start = total;
      for (int i = 0; i < ((h >> 2) & 3) && fds < kMaxFds; i++, fds++) {
        int fd = memfd_create("message-reader-fuzz", MFD_CLOEXEC);
        KJ_ASSERT(fd >= 0);
        writes.back().fds.emplace_back(fd);
        writes.back().inodes.push_back(inodeOf(fd));
      }
    }
    std::vector<kj::byte>& out = writes.back().bytes;
    size_t before = out.size();
    switch (h & 3) {
      case 0: {
        auto literal = input.bytes(input.byte());
        out.insert(out.end(), literal.begin(), literal.end());
        break;
      }
      case 1: {
        size_t length = size_t(input.u16()) * 8;
        out.insert(out.end(), kj::min(length, kMaxStreamBytes), input.byte());
        break;
      }
      case 2: {
        std::vector<uint32_t> sizes(input.byte() + 1);
        for (auto& size: sizes) size = input.u16();
        appendSegmentTable(out, sizes);
        break;
      }
      case 3: {
        std::vector<uint32_t> sizes(input.byte() % 8 + 1);
        for (auto& size: sizes) size = input.byte();
        appendSegmentTable(out, sizes);
        size_t words = 0;
        for (auto size: sizes) words += size;
        out.insert(out.end(), words * sizeof(capnp::word), kj::byte(0));
        break;
      }
    }
    total += out.size() - before;
  }
  // An empty write cannot carry fds over a stream socket: drop those.
  std::vector<Write> nonEmpty;
  for (auto& write: writes) {
    if (!write.bytes.empty()) nonEmpty.push_back(kj::mv(write));
  }
  return nonEmpty;
}

uint32_t word32At(kj::ArrayPtr<const kj::byte> stream, uint64_t at) {
  uint32_t value;
  memcpy(&value, stream.begin() + at, 4);
  return value;
}

// Whether the message at `start` is all there (its segment table and every segment).
bool wholeMessageAt(kj::ArrayPtr<const kj::byte> stream, uint64_t start) {
  uint64_t left = stream.size() - start;
  if (left < 8) return false;
  uint64_t segments = uint64_t(word32At(stream, start)) + 1;
  uint64_t header = (segments / 2 + 1) * 8;
  if (header > left) return false;
  uint64_t words = 0;
  for (uint64_t i = 0; i < segments; i++) words += word32At(stream, start + 4 + 4 * i);
  return header + words * 8 <= left;
}

// capnp's reading of the same bytes.
Outcome reference(kj::ArrayPtr<const kj::byte> stream, capnp::ReaderOptions options) {
  Outcome outcome;
  kj::ArrayInputStream in(stream);
  for (;;) {
    uint64_t start = stream.size() - in.tryGetReadBuffer().size();
    if (start == stream.size()) return outcome;  // a clean end, between messages
    // Cut short by the end of the stream: capnp's reader would throw too (and log a second
    // error from its destructor); the deliberate difference (see the top of this file).
    if (!wholeMessageAt(stream, start) || word32At(stream, start) == 0xffffffff) {
      outcome.failed = true;
      outcome.failedAt = start;
      return outcome;
    }
    Message message;
    message.start = start;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      capnp::InputStreamMessageReader reader(in, options);
      // It reads segments after the first lazily: read them all now.
      for (capnp::uint i = 0;; i++) {
        auto segment = reader.getSegment(i);
        if (segment == nullptr) break;
        message.segments.push_back(bytesOf(segment));
      }
    })) {
      outcome.failed = true;
      outcome.failedAt = start;
      return outcome;
    }
    message.end = stream.size() - in.tryGetReadBuffer().size();
    outcome.messages.push_back(kj::mv(message));
  }
}

kj::Promise<void> writeFrom(kj::AsyncCapabilityStream& out, std::vector<Write>& writes,
                            size_t i) {
  if (i == writes.size()) {
    out.shutdownWrite();
    return kj::READY_NOW;
  }
  Write& write = writes[i];
  auto data = kj::arrayPtr(write.bytes.data(), write.bytes.size());
  kj::Promise<void> sent = write.fds.empty()
      ? out.write(data.begin(), data.size())
      : out.writeWithFds(data, nullptr, kj::arrayPtr(write.fds.data(), write.fds.size()));
  return sent.then([&out, &writes, i]() { return writeFrom(out, writes, i + 1); });
}

struct Io {
  kj::AsyncIoContext context = kj::setupAsyncIo();
};

Io& io() {
  static Io* instance = new Io;  // for the whole process: libFuzzer calls in a loop
  return *instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& waitScope = io().context.waitScope;
  size_t fdsBefore = openFds();
  FuzzInput input(data, size);
  uint8_t config = input.byte();
  capnp::ReaderOptions options;
  const uint64_t limits[] = {options.traversalLimitInWords, 0, 16, 9000};
  options.traversalLimitInWords = limits[config & 3];
  bool readFds = config & 4;
  size_t fdSpaceSize = (config >> 3) & 3;

  {
    std::vector<Write> writes = decodeWrites(input);
    std::vector<kj::byte> stream;
    for (auto& write: writes) stream.insert(stream.end(), write.bytes.begin(), write.bytes.end());
    Outcome expected = reference(kj::arrayPtr(stream.data(), stream.size()), options);

    Outcome got;
    {
      auto pipe = io().context.provider->newCapabilityPipe();
      auto& writerEnd = *pipe.ends[0];
      auto& readerEnd = *pipe.ends[1];
      kj::Promise<void> writing = writeFrom(writerEnd, writes, 0).eagerlyEvaluate(nullptr);
      ReadAheadMessageReader reader(
          readerEnd, readFds ? kj::Maybe<kj::AsyncCapabilityStream&>(readerEnd) : nullptr);
      for (;;) {
        kj::AutoCloseFd fdSpace[kMaxFdSpace];
        kj::Maybe<capnp::MessageReaderAndFds> next;
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          next = reader.tryReadMessage(kj::arrayPtr(fdSpace, fdSpaceSize), options)
                     .wait(waitScope);
        })) {
          got.failed = true;
          break;
        }
        KJ_IF_MAYBE(message, next) {
          Message m;
          for (capnp::uint i = 0;; i++) {
            auto segment = message->reader->getSegment(i);
            if (segment == nullptr) break;
            m.segments.push_back(bytesOf(segment));
          }
          KJ_ASSERT(message->fds.size() <= fdSpaceSize);
          for (auto& fd: message->fds) m.fdInodes.push_back(inodeOf(fd));
          got.messages.push_back(kj::mv(m));
        } else {
          break;
        }
      }
      // The writer may still be blocked on a full socket if the reader gave up: cancel it.
    }

    KJ_ASSERT(got.messages.size() == expected.messages.size() && got.failed == expected.failed,
              "the reader and capnp disagree", got.messages.size(), got.failed,
              expected.messages.size(), expected.failed);
    std::vector<ino_t> sent;
    for (auto& write: writes) sent.insert(sent.end(), write.inodes.begin(), write.inodes.end());
    for (size_t i = 0; i < got.messages.size(); i++) {
      auto& ours = got.messages[i];
      auto& theirs = expected.messages[i];
      KJ_ASSERT(ours.segments == theirs.segments, "message differs", i);
      for (ino_t inode: ours.fdInodes) {
        KJ_ASSERT(std::find(sent.begin(), sent.end(), inode) != sent.end(),
                  "received an fd that was never sent", i);
      }
      if (!readFds) {
        KJ_ASSERT(ours.fdInodes.empty());
      }
    }
    // Fds go to the message their write starts, when no other message starts inside it.
    if (readFds) {
      for (auto& write: writes) {
        if (write.fds.empty()) continue;
        uint64_t end = write.start + write.bytes.size();
        size_t startsHere = SIZE_MAX, startsInside = 0;
        for (size_t i = 0; i < got.messages.size(); i++) {
          uint64_t start = expected.messages[i].start;
          if (start == write.start) startsHere = i;
          if (start > write.start && start < end) startsInside++;
        }
        // So does one that was refused, or cut short: it may still start within the same read.
        if (expected.failed && expected.failedAt > write.start && expected.failedAt < end) {
          startsInside++;
        }
        if (startsHere == SIZE_MAX || startsInside > 0) continue;
        size_t count = kj::min(write.inodes.size(), fdSpaceSize);
        std::vector<ino_t> want(write.inodes.begin(), write.inodes.begin() + count);
        KJ_ASSERT(got.messages[startsHere].fdInodes == want,
                  "a message did not get the fds sent with it", startsHere,
                  got.messages[startsHere].fdInodes.size(), count);
      }
    }
  }
  KJ_ASSERT(openFds() == fdsBefore, "fds leaked", fdsBefore, openFds());
  return 0;
}
