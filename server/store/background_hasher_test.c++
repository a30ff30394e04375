// BackgroundHasher (server/background_hasher.h): the thread that hashes large values after they
// are sealed, and how ObjectStore uses it. In one process, with the test thread's event loop.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include <capnp/message.h>
#include <kj/async-io.h>

#include "server/store/background_hasher.h"
#include "server/store/object_store.h"
#include "server/shm/jemalloc_arena.h"
#include "server/runtime/uv_loop.h"

using namespace refstore;
using namespace refstore::server;

namespace {

std::shared_ptr<std::atomic<bool>> notStopped() {
  return std::make_shared<std::atomic<bool>>(false);
}

double cpuSeconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
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
  // The pass over 256 MiB costs milliseconds of CPU. Run inline, that CPU time would be the
  // caller's; on the hashing thread the caller only sleeps in wait(). So the caller's CPU time
  // during hash() + wait() is compared with what the same pass costs inline. (Until session
  // 10 this checked that the promise was still pending right after hash() returned, which
  // failed whenever the caller lost its CPU for as long as the pass took.) 256 MiB, so that
  // the pass (~16 ms inline) dwarfs what the call and the wake-up cost the caller: ~2 ms under
  // ThreadSanitizer (--config=tsan), where 64 MiB's ~4 ms pass was too close.
  std::vector<kj::byte> data(256 << 20, kj::byte(3));
  double before = cpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  XXH128_hash_t want = XXH3_128bits(data.data(), data.size());
  double inlinePass = cpuSeconds(CLOCK_THREAD_CPUTIME_ID) - before;
  before = cpuSeconds(CLOCK_THREAD_CPUTIME_ID);
  auto hash = hasher.hash(kj::arrayPtr(data.data(), data.size()), notStopped()).wait(waitScope);
  double caller = cpuSeconds(CLOCK_THREAD_CPUTIME_ID) - before;
  CHECK(sameHash(hash, want));
  CHECK(caller < inlinePass / 4);
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
      // Let the thread start: a 256 MiB pass takes well over 10 ms, so after 2 ms it is
      // running, and the drop below must wait for it.
      loop.run();
      usleep(2000);
    }
    CHECK(munmap(p, kSize) == 0);
  }
  // The hasher still works afterwards.
  std::vector<kj::byte> small(100, kj::byte(9));
  CHECK(sameHash(hasher.hash(kj::arrayPtr(small.data(), small.size()), notStopped())
                     .wait(waitScope),
                 XXH3_128bits(small.data(), small.size())));
}

namespace {

// A store that hashes large values on `hasher`, checking restores on `uv`'s pool.
ObjectStore::Options storeOptions(shm::Allocator& arena, kj::Timer& timer,
                                  BackgroundHasher& hasher, UvLoop& uv) {
  ObjectStore::Options options{arena, timer, /*origin=*/42};
  options.hashing = HashScheduler::Options{hasher, uv};
  return options;
}

}  // namespace

TEST_CASE("a value dropped while its hash runs stays pinned, counted as a cancelled hash, until "
          "the hashing thread stops; then it is freed") {
  // cancelledHashesRunning() is what makes the daemon stop busy-polling so the hashing thread
  // gets a core to notice the cancellation (refbench reclaim_64MiB_ms: 1-7 ms -> ~0.5 ms).
  kj::AsyncIoContext io = kj::setupAsyncIo();
  UvLoop uv(io.unixEventPort);
  BackgroundHasher hasher;
  shm::JemallocArena arena{shm::JemallocArena::Options{256ull << 20, 64ull << 20}};
  ObjectStore store{storeOptions(arena, io.provider->getTimer(), hasher, uv)};
  gc::ClientId client = store.clients().add(ClientInfo{kj::str("test"), 1, 0});
  constexpr uint64_t kSize = 32ull << 20;  // far above kHashInlineBytes: hashed in the background
  auto memory = store.reserve(kSize, 0 * kj::SECONDS, client).wait(io.waitScope);
  auto created = store.create(kj::mv(memory), kSize, client);
  store.seal(created.id, {});
  auto hashed = store.whenHashed(created.id);  // start it now rather than after the delay
  CHECK_FALSE(store.hashing().cancelledHashesRunning());  // hashing, but the value is alive
  CHECK(store.hashing().whenCancelledHashesStop() == nullptr);
  store.removeHolder(created.writer);           // its only reference
  CHECK(store.hashing().cancelledHashesRunning());
  REQUIRE(store.table().find(created.id) != nullptr);
  CHECK(store.table().find(created.id)->dead);  // dead, but pinned by the hash
  KJ_IF_MAYBE(stopping, store.hashing().whenCancelledHashesStop()) {
    stopping->wait(io.waitScope);
  } else {
    FAIL("a cancelled hash is running, so there must be something to wait for");
  }
  CHECK_FALSE(store.hashing().cancelledHashesRunning());
  CHECK(store.table().find(created.id) == nullptr);  // freed
}

namespace {

// An ObjectStore hashing in the background, on this thread's event loop.
struct StoreFixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  UvLoop uv{io.unixEventPort};
  BackgroundHasher hasher;
  shm::JemallocArena arena{shm::JemallocArena::Options{256ull << 20, 64ull << 20}};
  ObjectStore store{storeOptions(arena, io.provider->getTimer(), hasher, uv)};
  gc::ClientId client = store.clients().add(ClientInfo{kj::str("test"), 1, 0});
  // Seals a value of `size` bytes of `fill` (far above kHashInlineBytes: hashed in the
  // background).
  gc::ObjectTable::Created seal(uint64_t size, kj::byte fill) {
    auto memory = store.reserve(size, 0 * kj::SECONDS, client).wait(io.waitScope);
    auto created = store.create(kj::mv(memory), size, client);
    memset(store.bytes(created.id).begin(), fill, size);
    store.seal(created.id, {});
    return created;
  }
  uint64_t backgroundHashes() { return store.stats().backgroundHashesTotal; }
  bool hasHash(gc::ObjectId id, kj::byte fill, uint64_t size) {
    std::vector<kj::byte> expected(size, fill);
    XXH128_hash_t want = XXH3_128bits(expected.data(), size);
    auto record = store.table().find(id);
    return record != nullptr && record->hashHi == want.high64 && record->hashLo == want.low64;
  }
  void sleep(kj::Duration duration) {
    io.provider->getTimer().afterDelay(duration).wait(io.waitScope);
  }
};

}  // namespace

TEST_CASE("a large value is hashed in the background once it has lived the hash delay") {
  StoreFixture f;
  constexpr uint64_t kSize = 8ull << 20;
  auto created = f.seal(kSize, 7);
  // Not at once: a value read and dropped right away should never cost a pass.
  CHECK(f.store.table().find(created.id)->hashHi == 0);
  CHECK(f.store.table().find(created.id)->pins == 0);  // nothing holds it in place yet
  for (int i = 0; i < 500 && !f.hasHash(created.id, 7, kSize); i++) f.sleep(10 * kj::MILLISECONDS);
  CHECK(f.hasHash(created.id, 7, kSize));
  CHECK(f.backgroundHashes() == 1);
  CHECK(f.store.table().find(created.id)->pins == 0);  // the pass's pin is gone
}

TEST_CASE("a large value dropped before its hash delay is freed at once and never hashed") {
  StoreFixture f;
  auto created = f.seal(8ull << 20, 3);
  f.store.removeHolder(created.writer);  // its only reference
  CHECK(f.store.table().find(created.id) == nullptr);  // freed: no hash pins it
  CHECK_FALSE(f.store.hashing().cancelledHashesRunning());
  f.sleep((HashScheduler::kDefaultDelayMillis + 100) * kj::MILLISECONDS);  // past its turn
  CHECK(f.backgroundHashes() == 0);
}

TEST_CASE("whenHashed starts a deferred hash at once instead of waiting for its turn") {
  StoreFixture f;
  constexpr uint64_t kSize = 8ull << 20;
  auto created = f.seal(kSize, 9);
  auto hashed = f.store.whenHashed(created.id);
  CHECK(f.store.table().find(created.id)->pins == 1);  // the pass holds it: it has started
  hashed.wait(f.io.waitScope);
  CHECK(f.hasHash(created.id, 9, kSize));
  CHECK(f.backgroundHashes() == 1);
  // Its queue entry is skipped when due: the value is not hashed twice.
  f.sleep((HashScheduler::kDefaultDelayMillis + 100) * kj::MILLISECONDS);
  CHECK(f.backgroundHashes() == 1);
}
