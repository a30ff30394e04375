// Unit tests of the connection transport both ends use (schema/batching_message_stream.h), over
// a real Unix socketpair: batching must keep every message, in order, with its fds, and a
// failed write must not go unnoticed.
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

#include "schema/batching_message_stream.h"

using refstore::BatchingMessageStream;

namespace {

// A message whose root is the text `body`.
kj::Own<capnp::MallocMessageBuilder> message(const std::string& body) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>();
  builder->initRoot<capnp::AnyPointer>().setAs<capnp::Text>(body);
  return builder;
}

std::string bodyOf(capnp::MessageReader& reader) {
  return reader.getRoot<capnp::AnyPointer>().getAs<capnp::Text>();
}

struct Pair {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::CapabilityPipe pipe = io.provider->newCapabilityPipe();
  kj::AsyncCapabilityStream& writerEnd = *pipe.ends[0];
  kj::AsyncCapabilityStream& readerEnd = *pipe.ends[1];
  BatchingMessageStream stream{writerEnd, writerEnd};

  // Reads one message (and up to 2 fds) from the far end, as capnp's RPC reader does.
  std::pair<std::string, std::vector<kj::AutoCloseFd>> receive() {
    kj::AutoCloseFd fdSpace[2];
    auto got = capnp::tryReadMessage(readerEnd, fdSpace).wait(io.waitScope);
    auto& read = KJ_ASSERT_NONNULL(got);
    std::vector<kj::AutoCloseFd> fds;
    for (auto& fd: read.fds) fds.push_back(kj::mv(fd));
    return {bodyOf(*read.reader), kj::mv(fds)};
  }
};

}  // namespace

TEST_CASE("small messages written in one turn go out in one write, in order") {
  Pair p;
  std::vector<kj::Own<capnp::MallocMessageBuilder>> sent;
  for (int i = 0; i < 20; i++) {
    sent.push_back(message("small " + std::to_string(i)));
    auto done = p.stream.writeMessage(nullptr, sent.back()->getSegmentsForOutput());
    CHECK(done.poll(p.io.waitScope));  // reported written at once: the bytes were copied
  }
  sent.clear();  // the callers' messages are gone; the batch owns its copy
  CHECK(p.stream.streamWrites() == 0);
  p.io.waitScope.poll();  // the loop goes idle: the batch is written
  CHECK(p.stream.streamWrites() == 1);
  CHECK(p.stream.messagesWritten() == 20);
  for (int i = 0; i < 20; i++) CHECK(p.receive().first == "small " + std::to_string(i));
}

TEST_CASE("bulk messages and messages with fds keep their order, and fds their message") {
  Pair p;
  int fd = memfd_create("batching-test", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  kj::AutoCloseFd owned(fd);
  struct stat sent;
  REQUIRE(fstat(fd, &sent) == 0);

  std::string bulk(BatchingMessageStream::kMaxBatchedBytes * 4, 'b');
  auto a = message("a"), b = message(bulk), c = message("c"), d = message("d with fd"),
       e = message("e");
  int fds[] = {fd};
  CHECK(p.stream.writeMessage(nullptr, a->getSegmentsForOutput()).poll(p.io.waitScope));
  auto bulkDone = p.stream.writeMessage(nullptr, b->getSegmentsForOutput());
  CHECK(p.stream.writeMessage(nullptr, c->getSegmentsForOutput()).poll(p.io.waitScope));
  auto fdDone = p.stream.writeMessage(fds, d->getSegmentsForOutput());
  CHECK(p.stream.writeMessage(nullptr, e->getSegmentsForOutput()).poll(p.io.waitScope));

  std::vector<std::pair<std::string, size_t>> want = {
      {"a", 0}, {bulk, 0}, {"c", 0}, {"d with fd", 1}, {"e", 0}};
  for (auto& [body, fdCount]: want) {
    auto got = p.receive();
    CHECK(got.first == body);
    REQUIRE(got.second.size() == fdCount);
    if (fdCount == 1) {
      struct stat received;
      REQUIRE(fstat(got.second[0].get(), &received) == 0);
      CHECK(received.st_ino == sent.st_ino);  // the very memfd, with its own message
    }
  }
  bulkDone.wait(p.io.waitScope);
  fdDone.wait(p.io.waitScope);
  // a | b (straight from the caller's memory) | c | d with its fd | e
  CHECK(p.stream.streamWrites() == 5);
  CHECK(p.stream.messagesWritten() == 5);
}

TEST_CASE("a long burst goes out in pieces without waiting for the loop to go idle") {
  Pair p;
  std::vector<kj::Own<capnp::MallocMessageBuilder>> sent;
  size_t bytes = 0;
  int count = 0;
  while (bytes < BatchingMessageStream::kFlushAtBytes + 1000) {
    sent.push_back(message(std::string(1000, char('a' + count % 26))));
    bytes += capnp::computeSerializedSizeInWords(*sent.back()) * sizeof(capnp::word);
    CHECK(p.stream.writeMessage(nullptr, sent.back()->getSegmentsForOutput()).poll(p.io.waitScope));
    count++;
  }
  p.io.waitScope.poll();
  CHECK(p.stream.streamWrites() == 2);  // one at the threshold, the rest when idle
  CHECK(p.stream.messagesWritten() == uint64_t(count));
  for (int i = 0; i < count; i++) CHECK(p.receive().first == std::string(1000, char('a' + i % 26)));
}

TEST_CASE("a message's fds are duplicated: the caller may close them before the write") {
  Pair p;
  int fd = memfd_create("batching-test", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  struct stat sent;
  REQUIRE(fstat(fd, &sent) == 0);
  auto before = message("queued before"), carrier = message("carries the fd");
  CHECK(p.stream.writeMessage(nullptr, before->getSegmentsForOutput()).poll(p.io.waitScope));
  int fds[] = {fd};
  auto done = p.stream.writeMessage(fds, carrier->getSegmentsForOutput());
  REQUIRE(close(fd) == 0);  // e.g. a Finish released the capability that owned it
  done.wait(p.io.waitScope);
  CHECK(p.receive().first == "queued before");
  auto got = p.receive();
  CHECK(got.first == "carries the fd");
  REQUIRE(got.second.size() == 1);
  struct stat received;
  REQUIRE(fstat(got.second[0].get(), &received) == 0);
  CHECK(received.st_ino == sent.st_ino);
}

TEST_CASE("flushAll sends pending messages now, ending the batch") {
  Pair p;
  auto one = message("one"), two = message("two"), three = message("three");
  CHECK(p.stream.writeMessage(nullptr, one->getSegmentsForOutput()).poll(p.io.waitScope));
  CHECK(p.stream.writeMessage(nullptr, two->getSegmentsForOutput()).poll(p.io.waitScope));
  BatchingMessageStream::flushAll();
  CHECK(p.stream.writeMessage(nullptr, three->getSegmentsForOutput()).poll(p.io.waitScope));
  p.io.waitScope.poll();
  CHECK(p.stream.streamWrites() == 2);  // "one two", then "three"
  CHECK(p.receive().first == "one");
  CHECK(p.receive().first == "two");
  CHECK(p.receive().first == "three");
}

TEST_CASE("end() writes what is pending before shutting the write side") {
  Pair p;
  auto last = message("last words");
  CHECK(p.stream.writeMessage(nullptr, last->getSegmentsForOutput()).poll(p.io.waitScope));
  p.stream.end().wait(p.io.waitScope);
  CHECK(p.receive().first == "last words");
  CHECK(capnp::tryReadMessage(p.readerEnd).wait(p.io.waitScope) == nullptr);  // then EOF
}

TEST_CASE("a failed batched write fails later writes and ends reading") {
  Pair p;
  auto reading = p.stream.tryReadMessage(nullptr, capnp::ReaderOptions(), nullptr)
                     .then([](kj::Maybe<capnp::MessageReaderAndFds>) { return true; },
                           [](kj::Exception&&) { return true; });
  p.writerEnd.shutdownWrite();  // our writes now fail (EPIPE); the peer stays silent
  auto lost = message("into the void");
  // Reported written (copied); the write itself fails when the batch goes out.
  CHECK(p.stream.writeMessage(nullptr, lost->getSegmentsForOutput()).poll(p.io.waitScope));
  p.io.waitScope.poll();
  auto next = message("next");
  CHECK_THROWS(p.stream.writeMessage(nullptr, next->getSegmentsForOutput()).wait(p.io.waitScope));
  // Nothing will ever arrive, yet our reader does not wait forever: the failure ended it.
  auto timeout = p.io.provider->getTimer().afterDelay(10 * kj::SECONDS).then([]() { return false; });
  CHECK(reading.exclusiveJoin(kj::mv(timeout)).wait(p.io.waitScope));
}

namespace {

// A stream whose shutdown(2) calls fail, as they do with ENOTCONN on a TCP connection the peer
// has reset; writes fail as they do then too.
class ResetStream final: public kj::AsyncIoStream {
 public:
  kj::Promise<size_t> tryRead(void*, size_t, size_t) override { return kj::NEVER_DONE; }
  kj::Promise<void> write(const void*, size_t) override { return reset(); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>>) override {
    return reset();
  }
  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }
  void shutdownWrite() override { KJ_FAIL_SYSCALL("shutdown(fd, SHUT_WR)", ENOTCONN); }
  void abortRead() override { KJ_FAIL_SYSCALL("shutdown(fd, SHUT_RD)", ENOTCONN); }

 private:
  static kj::Promise<void> reset() {
    return KJ_EXCEPTION(DISCONNECTED, "write(): Connection reset by peer");
  }
};

}  // namespace

TEST_CASE("a reset connection whose shutdown fails still ends: end() settles, never hangs") {
  // capnp drops a connection only once end() settles, and reports it gone only then; a throw
  // from the failed write's abortRead() once left end() pending forever.
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  ResetStream reset;
  BatchingMessageStream stream(reset, nullptr);
  auto abort = message("abort");
  CHECK(stream.writeMessage(nullptr, abort->getSegmentsForOutput()).poll(waitScope));
  auto ended = stream.end().then([]() { return false; }, [](kj::Exception&&) { return true; });
  CHECK(ended.poll(waitScope));
  CHECK(ended.wait(waitScope));  // rejected: the queue's first write failed
}
