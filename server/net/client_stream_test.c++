// Unit tests of the daemon's connection stream (server/client_stream.h) and busy polling
// (server/busy_poll.h), over a real socketpair: the daemon's read stack must hand every message
// back in order, accept no fds and report client activity; the spinner must not hold back
// batched writes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async-io.h>
#include <kj/io.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize-async.h>

#include "schema/batching_message_stream.h"
#include "server/runtime/busy_poll.h"
#include "server/net/client_stream.h"

using namespace refstore::server;

namespace {

// A message whose root is the text `body`.
kj::Own<capnp::MallocMessageBuilder> message(const std::string& body) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>();
  builder->initRoot<capnp::AnyPointer>().setAs<capnp::Text>(body);
  return builder;
}

}  // namespace

TEST_CASE("the daemon's read stack returns every message in order, accepts no fds, reports activity") {
  // The stack a connection reads through (server/listener.c++): BatchingMessageStream (with its
  // read-ahead) over ClientStream over the accepted Unix socket.
  auto io = kj::setupAsyncIo();
  BusyPoll busyPoll(io.waitScope, 50 * kj::MICROSECONDS);
  auto pipe = io.provider->newCapabilityPipe();
  ClientStream stream(kj::mv(pipe.ends[0]), busyPoll);
  refstore::BatchingMessageStream daemonSide(stream, stream);
  kj::Own<kj::AsyncCapabilityStream> peer = kj::mv(pipe.ends[1]);
  refstore::BatchingMessageStream clientSide(*peer, *peer);

  // What a client sends: a burst of small messages, a bulk one bigger than the read-ahead
  // buffer, a message carrying an fd (which the daemon must not accept), small ones again.
  std::vector<std::string> bodies;
  for (int i = 0; i < 20; i++) bodies.push_back("small " + std::to_string(i));
  bodies.push_back(std::string(300 * 1024, 'b'));
  bodies.push_back("with an fd");
  for (int i = 0; i < 5; i++) bodies.push_back("tail " + std::to_string(i));
  int fdIndex = 21;
  kj::AutoCloseFd sentFd(dup(STDERR_FILENO));
  int fds[1] = {sentFd.get()};
  std::vector<kj::Own<capnp::MallocMessageBuilder>> sent;
  kj::Vector<kj::Promise<void>> writes;
  for (size_t i = 0; i < bodies.size(); i++) {
    sent.push_back(message(bodies[i]));
    auto withFds = int(i) == fdIndex ? kj::arrayPtr(fds, 1) : nullptr;
    writes.add(clientSide.writeMessage(withFds, sent.back()->getSegmentsForOutput()));
  }
  auto written = kj::joinPromises(writes.releaseAsArray());

  for (size_t i = 0; i < bodies.size(); i++) {
    kj::AutoCloseFd fdSpace[2];
    auto got = daemonSide.tryReadMessage(fdSpace, capnp::ReaderOptions(), nullptr)
                   .wait(io.waitScope);
    auto& read = KJ_ASSERT_NONNULL(got);
    CHECK(std::string(read.reader->getRoot<capnp::AnyPointer>().getAs<capnp::Text>()) ==
          bodies[i]);
    CHECK(read.fds.size() == 0);  // no fd is ever handed to the daemon
  }
  written.wait(io.waitScope);
  CHECK(busyPoll.spinning());  // bytes arrived: the loop spins for the next request

  // A clean end of stream ends the messages.
  peer->shutdownWrite();
  kj::AutoCloseFd fdSpace[2];
  CHECK(daemonSide.tryReadMessage(fdSpace, capnp::ReaderOptions(), nullptr).wait(io.waitScope) ==
        nullptr);
}

TEST_CASE("busy polling stops after its window, and a zero window never spins") {
  auto io = kj::setupAsyncIo();
  BusyPoll busyPoll(io.waitScope, 200 * kj::MICROSECONDS);
  busyPoll.activity();
  CHECK(busyPoll.spinning());
  // Wait well past the window on the event loop: the spinner must have given up.
  io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK_FALSE(busyPoll.spinning());

  BusyPoll off(io.waitScope, 0 * kj::MICROSECONDS);
  off.activity();
  CHECK_FALSE(off.spinning());
}

TEST_CASE("busy polling yields while others need the CPU") {
  auto io = kj::setupAsyncIo();
  bool poolBusy = true;
  BusyPoll busyPoll(io.waitScope, 10 * kj::SECONDS, [&]() { return poolBusy; });
  busyPoll.activity();
  io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK_FALSE(busyPoll.spinning());  // gave up at once despite a 10 s window
  poolBusy = false;
  busyPoll.activity();
  io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(busyPoll.spinning());
}

TEST_CASE("busy polling sends the connections' batched messages instead of holding them back") {
  // The spinner re-arms itself with evalLast, which KJ runs newest first: a stream's own
  // evalLast flush would wait behind it for the whole window. The spinner must send them.
  auto io = kj::setupAsyncIo();
  BusyPoll busyPoll(io.waitScope, 10 * kj::SECONDS);
  auto pipe = io.provider->newCapabilityPipe();
  refstore::BatchingMessageStream messages(*pipe.ends[0], *pipe.ends[0]);
  capnp::MallocMessageBuilder reply;
  reply.initRoot<capnp::AnyPointer>().setAs<capnp::Text>("reply");
  // The write first, then the spinner: the spinner's evalLast is newer, so it runs (and keeps
  // re-arming itself) ahead of the stream's own flush, and only flushAll can send the reply.
  auto written = messages.writeMessage(nullptr, reply.getSegmentsForOutput());
  busyPoll.activity();  // spinning from now on, for up to 10 s
  CHECK(written.poll(io.waitScope));
  auto received = capnp::tryReadMessage(*pipe.ends[1]).then(
      [](kj::Maybe<kj::Own<capnp::MessageReader>> got) { return got != nullptr; });
  auto tooLate = io.provider->getTimer().afterDelay(2 * kj::SECONDS).then([]() { return false; });
  CHECK(received.exclusiveJoin(kj::mv(tooLate)).wait(io.waitScope));
  CHECK(busyPoll.spinning());  // it was still spinning: the spinner itself sent the message
}
