// Unit tests of the daemon's connection stream (server/client_stream.h) and busy polling
// (server/busy_poll.h), over a real socketpair: read-ahead must hand every byte back in order,
// whatever mix of small and large reads Cap'n Proto makes, and report client activity; the
// spinner must not hold back batched writes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async-io.h>
#include <kj/io.h>

#include <vector>

#include <capnp/message.h>
#include <capnp/serialize-async.h>

#include "schema/batching_message_stream.h"
#include "server/busy_poll.h"
#include "server/client_stream.h"

using namespace refstore::server;

namespace {

std::vector<kj::byte> pattern(size_t size, int seed) {
  std::vector<kj::byte> bytes(size);
  for (size_t i = 0; i < size; i++) bytes[i] = kj::byte((i * 131 + seed * 7) ^ (i >> 9));
  return bytes;
}

}  // namespace

TEST_CASE("read-ahead returns every byte in order across small and bulk reads") {
  auto io = kj::setupAsyncIo();
  BusyPoll busyPoll(io.waitScope, 50 * kj::MICROSECONDS);
  auto pipe = io.provider->newCapabilityPipe();
  ClientStream stream(kj::mv(pipe.ends[0]), busyPoll);
  kj::Own<kj::AsyncCapabilityStream> peer = kj::mv(pipe.ends[1]);

  // What a client sends: small messages back to back, then a bulk chunk bigger than the
  // read-ahead buffer, then small ones again.
  auto small = pattern(1000, 1), bulk = pattern(300 * 1024, 2), tail = pattern(5000, 3);
  std::vector<kj::byte> all;
  for (auto* part: {&small, &bulk, &tail}) all.insert(all.end(), part->begin(), part->end());
  auto writing = peer->write(all.data(), all.size());

  std::vector<kj::byte> got(all.size());
  size_t at = 0;
  // Reads shaped like capnp's: an 8-byte header via tryReadWithFds, then a body via read().
  for (size_t want: {size_t(8), size_t(992), size_t(8), size_t(300 * 1024 - 8), size_t(8)}) {
    if (want == 8) {
      kj::AutoCloseFd fds[1];
      auto result = stream.tryReadWithFds(got.data() + at, 8, 8, fds, 1).wait(io.waitScope);
      CHECK(result.byteCount == 8);
      CHECK(result.capCount == 0);
    } else {
      size_t n = stream.read(got.data() + at, want, want).wait(io.waitScope);
      CHECK(n == want);
    }
    at += want;
  }
  // The rest with a min smaller than what is there: gets at least min, at most max.
  while (at < all.size()) {
    size_t n = stream.tryRead(got.data() + at, 1, all.size() - at).wait(io.waitScope);
    REQUIRE(n > 0);
    at += n;
  }
  writing.wait(io.waitScope);
  CHECK(got == all);
  CHECK(busyPoll.spinning());  // bytes arrived: the loop spins for the next request

  // End of stream: a short read returns what there is, then 0.
  peer->shutdownWrite();
  kj::byte extra[16];
  CHECK(stream.tryRead(extra, 1, sizeof(extra)).wait(io.waitScope) == 0);
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
