// Unit tests of Reception (data_receiver.h): what arrives is hashed and counted chunk by chunk,
// and relays waiting for bytes are woken exactly when their bytes have been checked.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async.h>

#include "server/dataplane/data_receiver.h"

using refstore::server::dataplane::Reception;

namespace {

// Receives [reached, reached + length) of `source` into `reception` as one chunk of two pieces,
// accepting it if `accept`.
void receiveChunk(Reception& reception, const kj::byte* source, size_t length, bool accept) {
  uint64_t at = reception.reached();
  kj::byte* into = reception.destination().begin() + at;
  memcpy(into, source + at, length);
  reception.startChunk();
  reception.receivedPiece(into, length / 2);
  reception.receivedPiece(into + length / 2, length - length / 2);
  if (accept) reception.acceptChunk(length);
}

}  // namespace

TEST_CASE("a reception hashes what it accepted, and forgets a chunk it did not") {
  kj::byte source[1000], into[1000];
  for (int i = 0; i < 1000; i++) source[i] = kj::byte(i * 7);
  Reception reception(kj::arrayPtr(into, 1000));
  receiveChunk(reception, source, 400, true);
  CHECK(reception.chunkHash() == XXH3_64bits(source, 400));
  receiveChunk(reception, source, 300, false);  // failed its check: not counted
  CHECK(reception.reached() == 400);
  receiveChunk(reception, source, 600, true);
  CHECK(reception.complete());
  XXH128_hash_t whole = XXH3_128bits(source, 1000), got = reception.hash();
  CHECK(got.high64 == whole.high64);
  CHECK(got.low64 == whole.low64);
}

TEST_CASE("whenReached wakes a waiter once its bytes are accepted, not before") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  kj::byte source[300] = {}, into[300];
  Reception reception(kj::arrayPtr(into, 300));
  auto first = reception.whenReached(100).eagerlyEvaluate(nullptr);
  auto all = reception.whenReached(300).eagerlyEvaluate(nullptr);
  CHECK(reception.whenReached(0).poll(waitScope));  // nothing to wait for
  receiveChunk(reception, source, 150, false);
  CHECK_FALSE(first.poll(waitScope));  // received, not accepted
  receiveChunk(reception, source, 150, true);
  CHECK(first.poll(waitScope));
  CHECK_FALSE(all.poll(waitScope));
  receiveChunk(reception, source, 150, true);
  CHECK(all.poll(waitScope));
  first.wait(waitScope);
  all.wait(waitScope);
}

TEST_CASE("a reception dropped before its bytes arrive fails its waiters") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  kj::byte into[100];
  auto reception = kj::heap<Reception>(kj::arrayPtr(into, 100));
  auto waiting = reception->whenReached(50).eagerlyEvaluate(nullptr);
  reception = nullptr;
  CHECK_THROWS(waiting.wait(waitScope));
}
