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

// A message whose root is the text `body`.
kj::Own<capnp::MallocMessageBuilder> message(const std::string& body) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>();
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
  // Two texts that do not fit the 8-word first segment: each goes to a segment of its own.
  capnp::MallocMessageBuilder builder(8, capnp::AllocationStrategy::FIXED_SIZE);
  auto texts = builder.initRoot<capnp::AnyPointer>().initAs<capnp::List<capnp::Text>>(2);
  texts.set(0, text);
  texts.set(1, text + "2");
  std::string bytes = wire(builder);
  REQUIRE(builder.getSegmentsForOutput().size() == 3);  // an odd count: a padded segment table
  // Byte by byte through the first word, the segment table and into the body: the reader must
  // wait for more at every step, and not return until the message is complete.
  kj::AutoCloseFd fdSpace[2];
  auto reading = p.reader.tryReadMessage(fdSpace, capnp::ReaderOptions());
  for (size_t i = 0; i < 40; i++) {
    p.send(bytes.substr(i, 1));
    CHECK(!reading.poll(p.io.waitScope));
  }
  p.send(bytes.substr(40) + wire(*message("after")));
  auto first = KJ_ASSERT_NONNULL(reading.wait(p.io.waitScope));
  auto got = first.reader->getRoot<capnp::AnyPointer>().getAs<capnp::List<capnp::Text>>();
  REQUIRE(got.size() == 2);
  CHECK(got[0] == text);
  CHECK(got[1] == text + "2");
  CHECK(first.reader->getSegment(2) != nullptr);
  CHECK(first.reader->getSegment(3) == nullptr);
  CHECK(p.reader.streamReads() > 40);
  CHECK(p.receive().body == "after");
}

TEST_CASE("a message that straddles the end of the buffer is completed after compaction") {
  Pair p;
  // ~120 KiB of 1 KiB messages in one write: the first read fills the buffer and ends inside
  // a message, whose start must be kept while the buffer is refilled.
  std::string burst;
  for (int i = 0; i < 120; i++) burst += wire(*message(std::string(1000, char('a' + i % 26))));
  auto writing = p.writerEnd.write(burst.data(), burst.size());
  for (int i = 0; i < 120; i++) CHECK(p.receive().body == std::string(1000, char('a' + i % 26)));
  writing.wait(p.io.waitScope);
  CHECK(p.reader.streamReads() >= 2);
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
  // The kernel glued the plain messages to the first fd message, and stopped after each fd one.
  CHECK(p.reader.streamReads() == 3);
}

TEST_CASE("an fd message after more than a buffer of plain data, and one with too many fds") {
  Pair p;
  kj::AutoCloseFd a = newMemfd(), b = newMemfd(), c = newMemfd();
  std::string plain;  // 100 KiB: the read that brings the fds starts inside an earlier message
  for (int i = 0; i < 100; i++) plain += wire(*message(std::string(1000, 'p')));
  auto writing = p.writerEnd.write(plain.data(), plain.size());
  auto withThree = message("with three");
  auto segments = withThree->getSegmentsForOutput();
  int fds[] = {a.get(), b.get(), c.get()};
  for (int i = 0; i < 100; i++) {
    Received r = p.receive();
    CHECK(r.fds.empty());
    if (i == 0) {
      writing.wait(p.io.waitScope);
      capnp::writeMessage(p.writerEnd, fds, segments).wait(p.io.waitScope);
    }
  }
  Received r = p.receive();  // fdSpace holds two: the third is closed, not leaked or passed on
  CHECK(r.body == "with three");
  REQUIRE(r.fds.size() == 2);
  CHECK(inodeOf(r.fds[0].get()) == inodeOf(a.get()));
  CHECK(inodeOf(r.fds[1].get()) == inodeOf(b.get()));
  p.send(wire(*message("then plain")));
  Received next = p.receive();
  CHECK(next.body == "then plain");
  CHECK(next.fds.empty());
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
  // Read with a good message before them, so that they are already buffered when their turn
  // comes (the path that takes a whole buffered message without reading).
  SUBCASE("too many segments, behind a good message in the same read") {
    Pair p;
    uint32_t header[2] = {600, 1};
    p.send(wire(*message("fine")) +
           std::string(reinterpret_cast<const char*>(header), sizeof(header)));
    CHECK(p.receive().body == "fine");
    CHECK_THROWS_WITH(p.receive(), doctest::Contains("too many segments"));
  }
  SUBCASE("bigger than the traversal limit, behind a good message in the same read") {
    Pair p;
    uint32_t header[2] = {0, 0x7fffffff};
    p.send(wire(*message("fine")) +
           std::string(reinterpret_cast<const char*>(header), sizeof(header)));
    CHECK(p.receive().body == "fine");
    CHECK_THROWS_WITH(p.receive(), doctest::Contains("Message is too large"));
  }
}
