// Unit tests of the client's incoming-message reader (schema/read_ahead_message_reader.h), over
// a real Unix socketpair: read-ahead must return every message intact and in order, hand each
// message exactly the fds that were sent with it, and name what is wrong with bad input.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <capnp/serialize-async.h>
#include <kj/async-io.h>

#include <string>
#include <vector>

#include "schema/read_ahead_message_reader.h"

using refstore::ReadAheadMessageReader;

namespace {

// A message whose root is the text `body`. A small `firstSegmentWords` with FIXED_SIZE spreads
// it over several segments.
kj::Own<capnp::MallocMessageBuilder> message(
    const std::string& body, uint firstSegmentWords = capnp::SUGGESTED_FIRST_SEGMENT_WORDS) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>(firstSegmentWords,
                                                       capnp::AllocationStrategy::FIXED_SIZE);
  builder->initRoot<capnp::AnyPointer>().setAs<capnp::Text>(body);
  return builder;
}

// The bytes of `builder` in wire format.
std::string wire(capnp::MallocMessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

ino_t inodeOf(int fd) {
  struct stat st;
  REQUIRE(fstat(fd, &st) == 0);
  return st.st_ino;
}

kj::AutoCloseFd newMemfd() {
  int fd = memfd_create("read-ahead-test", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  return kj::AutoCloseFd(fd);
}

struct Received {
  std::string body;
  std::vector<kj::AutoCloseFd> fds;
  size_t segments;
};

struct Pair {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::CapabilityPipe pipe = io.provider->newCapabilityPipe();
  kj::AsyncCapabilityStream& writerEnd = *pipe.ends[0];
  kj::AsyncCapabilityStream& readerEnd = *pipe.ends[1];
  ReadAheadMessageReader reader{readerEnd, readerEnd};

  // One write of these bytes (one sendmsg, so one skb run on the receiving side).
  void send(const std::string& bytes) {
    writerEnd.write(bytes.data(), bytes.size()).wait(io.waitScope);
  }
  // One message in its own sendmsg, with fds, as the daemon sends a Segment's fd.
  void sendWithFds(capnp::MallocMessageBuilder& builder, std::vector<int> fds) {
    capnp::writeMessage(writerEnd, kj::arrayPtr(fds.data(), fds.size()),
                        builder.getSegmentsForOutput())
        .wait(io.waitScope);
  }

  kj::Maybe<Received> tryReceive() {
    kj::AutoCloseFd fdSpace[2];
    auto got = reader.tryReadMessage(fdSpace, capnp::ReaderOptions()).wait(io.waitScope);
    KJ_IF_MAYBE(read, got) {
      Received r;
      r.body = read->reader->getRoot<capnp::AnyPointer>().getAs<capnp::Text>();
      for (auto& fd: read->fds) r.fds.push_back(kj::mv(fd));
      r.segments = 0;
      while (read->reader->getSegment(r.segments) != nullptr) r.segments++;
      return kj::mv(r);
    }
    return nullptr;
  }
  Received receive() { return KJ_ASSERT_NONNULL(tryReceive()); }
};

}  // namespace

TEST_CASE("a burst of small messages is read in one system call, in order") {
  Pair p;
  std::string burst;
  for (int i = 0; i < 100; i++) burst += wire(*message("message " + std::to_string(i)));
  p.send(burst);
  for (int i = 0; i < 100; i++) {
    Received r = p.receive();
    CHECK(r.body == "message " + std::to_string(i));
    CHECK(r.fds.empty());
  }
  CHECK(p.reader.streamReads() == 1);
}

TEST_CASE("messages of several segments and messages split across reads arrive intact") {
  Pair p;
  std::string text(3000, 'x');
  for (size_t i = 0; i < text.size(); i++) text[i] = char('a' + i % 26);
  auto multi = message(text, /*firstSegmentWords=*/8);  // the root pointer and text must spill
  std::string bytes = wire(*multi);
  REQUIRE(multi->getSegmentsForOutput().size() > 1);
  // Byte by byte for the first message's header, so every parsing step waits for more input.
  for (size_t i = 0; i < 20; i++) p.send(bytes.substr(i, 1));
  p.send(bytes.substr(20) + wire(*message("after")));
  Received first = p.receive();
  CHECK(first.body == text);
  CHECK(first.segments == multi->getSegmentsForOutput().size());
  CHECK(p.receive().body == "after");
}

TEST_CASE("a message bigger than the buffer is read straight into place, and what follows too") {
  Pair p;
  std::string big(3 * ReadAheadMessageReader::kBufferBytes + 123, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = char('A' + (i * 7) % 26);
  std::string bytes = wire(*message("before")) + wire(*message(big)) + wire(*message("after"));
  auto writing = p.writerEnd.write(bytes.data(), bytes.size());  // more than the socket holds
  CHECK(p.receive().body == "before");
  CHECK(p.receive().body == big);
  CHECK(p.receive().body == "after");
  writing.wait(p.io.waitScope);
}

TEST_CASE("fds go to the message they were sent with, not to those read with them") {
  Pair p;
  kj::AutoCloseFd a = newMemfd(), b = newMemfd(), c = newMemfd();
  // Three plain messages, then an fd message, then another fd message, then a plain one, all
  // queued before the reader reads anything: the first read glues the plain ones to the first
  // fd message (the kernel stops a read after the bytes that carry fds).
  std::string plain;
  for (int i = 0; i < 3; i++) plain += wire(*message("plain " + std::to_string(i)));
  p.send(plain);
  auto withA = message("with a");
  p.sendWithFds(*withA, {a.get()});
  auto withBC = message("with b and c");
  p.sendWithFds(*withBC, {b.get(), c.get()});
  p.send(wire(*message("last")));

  for (int i = 0; i < 3; i++) {
    Received r = p.receive();
    CHECK(r.body == "plain " + std::to_string(i));
    CHECK(r.fds.empty());
  }
  Received ra = p.receive();
  CHECK(ra.body == "with a");
  REQUIRE(ra.fds.size() == 1);
  CHECK(inodeOf(ra.fds[0].get()) == inodeOf(a.get()));
  Received rbc = p.receive();
  CHECK(rbc.body == "with b and c");
  REQUIRE(rbc.fds.size() == 2);
  CHECK(inodeOf(rbc.fds[0].get()) == inodeOf(b.get()));
  CHECK(inodeOf(rbc.fds[1].get()) == inodeOf(c.get()));
  Received last = p.receive();
  CHECK(last.body == "last");
  CHECK(last.fds.empty());
}

TEST_CASE("a big message keeps its fds") {
  Pair p;
  kj::AutoCloseFd fd = newMemfd();
  std::string big(2 * ReadAheadMessageReader::kBufferBytes, 'z');
  auto builder = message(big);
  auto segments = builder->getSegmentsForOutput();
  int fds[] = {fd.get()};
  auto writing = capnp::writeMessage(p.writerEnd, fds, segments);
  Received r = p.receive();
  writing.wait(p.io.waitScope);
  CHECK(r.body == big);
  REQUIRE(r.fds.size() == 1);
  CHECK(inodeOf(r.fds[0].get()) == inodeOf(fd.get()));
}

TEST_CASE("the end of the stream: clean between messages, an error inside one") {
  SUBCASE("between messages") {
    Pair p;
    p.send(wire(*message("only")));
    p.writerEnd.shutdownWrite();
    CHECK(p.receive().body == "only");
    CHECK(p.tryReceive() == nullptr);
  }
  SUBCASE("inside a message") {
    Pair p;
    std::string bytes = wire(*message("cut short"));
    p.send(bytes.substr(0, bytes.size() - 3));
    p.writerEnd.shutdownWrite();
    CHECK_THROWS_WITH(p.receive(), doctest::Contains("Premature EOF"));
  }
}

TEST_CASE("a malformed segment table is refused with an error that names it") {
  SUBCASE("too many segments") {
    Pair p;
    uint32_t header[2] = {600, 1};  // 601 segments
    p.send(std::string(reinterpret_cast<const char*>(header), sizeof(header)));
    CHECK_THROWS_WITH(p.receive(), doctest::Contains("too many segments"));
  }
  SUBCASE("bigger than the traversal limit") {
    Pair p;
    uint32_t header[2] = {0, 0x7fffffff};  // one segment of 16 GiB
    p.send(std::string(reinterpret_cast<const char*>(header), sizeof(header)));
    CHECK_THROWS_WITH(p.receive(), doctest::Contains("Message is too large"));
  }
}
