// BackgroundHasher (server/background_hasher.h): the low-priority thread that hashes large
// values after they are sealed. In one process, with the test thread's own event loop.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sys/mman.h>

#include <atomic>
#include <memory>
#include <vector>

#include <kj/async.h>

#include "server/background_hasher.h"

using refstore::server::BackgroundHasher;

namespace {

std::shared_ptr<std::atomic<bool>> notStopped() {
  return std::make_shared<std::atomic<bool>>(false);
}

bool sameHash(XXH128_hash_t a, XXH128_hash_t b) {
  return a.high64 == b.high64 && a.low64 == b.low64;
}

}  // namespace

TEST_CASE("BackgroundHasher computes XXH3-128, whatever the size") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  BackgroundHasher hasher;
  for (size_t size : {size_t{0}, size_t{1}, size_t{1} << 20, (size_t{1} << 20) + 3,
                      size_t{5} << 20}) {
    std::vector<kj::byte> data(size);
    for (size_t i = 0; i < size; i++) data[i] = kj::byte(i * 31 + 7);
    auto view = kj::arrayPtr(data.data(), data.size());
    XXH128_hash_t got = hasher.hash(view, notStopped()).wait(waitScope);
    CHECK(sameHash(got, XXH3_128bits(data.data(), data.size())));
  }
}

TEST_CASE("BackgroundHasher hashes on a thread of its own, not the caller's") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  BackgroundHasher hasher;
  // While the caller's thread sits in wait(), the hash completes: it cannot be running inline
  // (it would have finished before hash() returned) -- so check the promise is still pending
  // right after hash() returns for a value big enough to take a while.
  std::vector<kj::byte> data(64 << 20, kj::byte(3));
  auto promise = hasher.hash(kj::arrayPtr(data.data(), data.size()), notStopped());
  CHECK_FALSE(promise.poll(waitScope));
  CHECK(sameHash(promise.wait(waitScope), XXH3_128bits(data.data(), data.size())));
}

TEST_CASE("a stopped hash gives up instead of reading the whole value") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  BackgroundHasher hasher;
  std::vector<kj::byte> data(8 << 20, kj::byte(5));
  auto stop = std::make_shared<std::atomic<bool>>(true);  // the value died before the pass
  XXH128_hash_t got = hasher.hash(kj::arrayPtr(data.data(), data.size()), stop).wait(waitScope);
  CHECK_FALSE(sameHash(got, XXH3_128bits(data.data(), data.size())));
  CHECK(sameHash(got, XXH3_128bits(nullptr, 0)));  // no step was taken
}

TEST_CASE("dropping a hash's promise waits for the pass, so the bytes may be unmapped at once") {
  // If the promise's destruction returned while the thread was still reading, the munmap below
  // would pull the pages out from under it and the process would die of SIGSEGV.
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  BackgroundHasher hasher;
  constexpr size_t kSize = 256 << 20;
  for (int round = 0; round < 3; round++) {
    void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    memset(p, round + 1, kSize);
    {
      auto promise = hasher.hash(kj::arrayPtr(static_cast<kj::byte*>(p), kSize), notStopped());
      // Let the thread start (it may or may not have by the time the promise is dropped).
      loop.run();
    }
    CHECK(munmap(p, kSize) == 0);
  }
  // The hasher still works afterwards.
  std::vector<kj::byte> small(100, kj::byte(9));
  CHECK(sameHash(hasher.hash(kj::arrayPtr(small.data(), small.size()), notStopped())
                     .wait(waitScope),
                 XXH3_128bits(small.data(), small.size())));
}
