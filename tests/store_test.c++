// Integration tests: one client process against a real refstored over its real Unix socket
// (and TCP). Every expectation is about behaviour a user can observe: values, errors, stats.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include "third_party/fast_xxhash.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include <sys/stat.h>

#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>

#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;
using refstore::testing::eventually;

namespace {

ErrorCode codeOf(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("expected an Error");
  return ErrorCode::INTERNAL;
}

std::string text(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }

// Size and resident bytes of this process's mapping that contains `address` (/proc/self/smaps).
struct MappingUse {
  uint64_t size = 0, resident = 0;
};
MappingUse mappingUse(const void* address) {
  FILE* smaps = fopen("/proc/self/smaps", "r");
  REQUIRE(smaps != nullptr);
  MappingUse use;
  bool inside = false, found = false;
  char line[512];
  auto target = reinterpret_cast<uintptr_t>(address);
  while (fgets(line, sizeof line, smaps) != nullptr) {
    unsigned long start, end, kib;
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = start <= target && target < end;
      found |= inside;
    } else if (inside && sscanf(line, "Size: %lu kB", &kib) == 1) {
      use.size = uint64_t(kib) << 10;
    } else if (inside && sscanf(line, "Rss: %lu kB", &kib) == 1) {
      use.resident = uint64_t(kib) << 10;
    }
  }
  fclose(smaps);
  REQUIRE(found);
  return use;
}

}  // namespace

TEST_CASE("put, read back, info and hash") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  CHECK(client.sharedMemory());
  CHECK(client.writableSharedMemory());
  Ref ref = client.put("hello, refstore", 15);
  ObjectInfo info = ref.info();
  CHECK(info.size == 15);
  CHECK(info.state == "sealed");
  CHECK((info.hashHigh | info.hashLow) != 0);
  CHECK(text(ref.readAll()) == "hello, refstore");
  CHECK(text(ref.read(7, 100)) == "refstore");
  // Same bytes, same content hash; different bytes, different hash.
  Ref same = client.put("hello, refstore", 15);
  Ref other = client.put("hello, refstorf", 15);
  CHECK(same.info().hashLow == info.hashLow);
  CHECK(other.info().hashLow != info.hashLow);
  CHECK(same.info().id.serial != info.id.serial);
}

TEST_CASE("large values are hashed after sealing: info reports the XXH3-128 of their bytes") {
  // Above 1 MiB the daemon hashes on a thread of its own after answering seal/put, once the
  // value has lived --hash-delay-ms or when info() asks; info() waits.
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  for (size_t size: {size_t(1 << 20) + 1, size_t(24) << 20}) {
    CAPTURE(size);
    WriteBuffer buffer = client.create(size);
    refstore::testing::fillPattern(buffer.data(), size, 9);
    XXH128_hash_t expected = XXH3_128bits(buffer.data(), size);
    Ref sealed = buffer.seal();
    ObjectInfo info = sealed.info();
    CHECK(info.hashHigh == expected.high64);
    CHECK(info.hashLow == expected.low64);
    // The copy path hashes in the background too.
    std::vector<uint8_t> bytes(size <= (16u << 20) ? size : (16u << 20));
    refstore::testing::fillPattern(bytes.data(), bytes.size(), 10);
    XXH128_hash_t copied = XXH3_128bits(bytes.data(), bytes.size());
    Ref put = client.put(bytes.data(), bytes.size());
    CHECK(put.info().hashLow == copied.low64);
    CHECK(put.info().hashHigh == copied.high64);
  }
}

TEST_CASE("a large value's hash waits for --hash-delay-ms or info(); whenReady does not ask for it") {
  Daemon daemon("64M", {"--hash-delay-ms=60000"});
  Client client = Client::connect(daemon.socket());
  const size_t size = 6 << 20;
  WriteBuffer buffer = client.create(size);
  refstore::testing::fillPattern(buffer.data(), size, 3);
  XXH128_hash_t expected = XXH3_128bits(buffer.data(), size);
  Ref ref = buffer.seal();
  // Readiness and size need no pass over the value.
  ObjectInfo ready = ref.whenReady();
  CHECK(ready.size == size);
  CHECK(ref.size() == size);
  CHECK(ready.hashHigh == 0);
  CHECK(ready.hashLow == 0);
  CHECK(client.stats().backgroundHashesTotal == 0);
  // info() does: it starts the hash now rather than in a minute.
  ObjectInfo info = ref.info();
  CHECK(info.hashHigh == expected.high64);
  CHECK(info.hashLow == expected.low64);
  CHECK(client.stats().backgroundHashesTotal == 1);
  CHECK(ref.info().hashLow == expected.low64);  // recorded once, not hashed again
  CHECK(client.stats().backgroundHashesTotal == 1);
}

TEST_CASE("a large value dropped right after sealing frees its memory for the next create") {
  // With --hash-delay-ms=0 its hash starts at once and is still running when it dies; the next
  // create of the same size waits for that hash to stop (one 1 MiB step) and reuses the memory
  // instead of building another segment beside it.
  Daemon daemon("1G", {"--hash-delay-ms=0"});
  Client client = Client::connect(daemon.socket());
  const size_t size = 384 << 20;  // more than half a segment: a dedicated segment of its own
  auto putAndDrop = [&]() {
    WriteBuffer buffer = client.create(size);
    std::memset(buffer.data(), 5, size);
    buffer.seal();  // the Ref is dropped at once
  };
  putAndDrop();
  Stats warm = client.stats();
  for (int i = 0; i < 4; i++) {
    putAndDrop();
    Stats now = client.stats();
    CHECK(now.segments <= warm.segments);
    CHECK(now.segmentBytes <= warm.segmentBytes);
  }
}

TEST_CASE("create, write in place, seal, zero-copy view") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  const size_t size = 3 << 20;
  WriteBuffer buffer = client.create(size);
  REQUIRE(buffer.data() != nullptr);
  refstore::testing::fillPattern(buffer.data(), size, 42);
  CHECK(client.stats().creating == 1);
  Ref ref = buffer.seal();
  CHECK(client.stats().creating == 0);
  View view = ref.view();
  CHECK(view.size() == size);
  CHECK(refstore::testing::checkPattern(view.data(), size, 42));
  // A sealed buffer cannot be sealed or written again.
  CHECK(codeOf([&]() { buffer.seal(); }) == ErrorCode::FAILED_PRECONDITION);
}

TEST_CASE("dropping refs frees memory at once; a View pins memory after the last Ref") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  uint64_t baseline = client.stats().bytesUsed;
  {
    Ref ref = client.putLarge(std::vector<uint8_t>(1 << 20, 7).data(), 1 << 20);
    CHECK(client.stats().bytesUsed >= baseline + (1 << 20));
    View view = ref.view();
    { Ref gone = std::move(ref); }  // last Ref dropped while the View lives
    Stats pinned = client.stats();
    CHECK(pinned.pinnedDead == 1);
    CHECK(pinned.bytesUsed >= baseline + (1 << 20));
    CHECK(view.data()[12345] == 7);  // still readable
  }
  Stats after = client.stats();
  CHECK(after.objects == 0);
  CHECK(after.bytesUsed == baseline);
}

TEST_CASE("Stats.lastReclaimMonoUs stamps the last free on this host's monotonic clock") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  CHECK(client.stats().lastReclaimMonoUs == 0);  // nothing freed yet
  auto monoUs = []() {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return uint64_t(now.tv_sec) * 1000000 + uint64_t(now.tv_nsec) / 1000;
  };
  Ref ref = client.put("stamped", 7);
  Stats held = client.stats();
  CHECK(held.lastReclaimMonoUs == 0);
  uint64_t beforeDrop = monoUs();
  { Ref gone = std::move(ref); }
  Stats freed = client.stats();
  uint64_t afterStats = monoUs();
  REQUIRE(freed.reclaimedTotal == held.reclaimedTotal + 1);
  CHECK(freed.lastReclaimMonoUs >= beforeDrop);
  CHECK(freed.lastReclaimMonoUs <= afterStats);
}

TEST_CASE("a dropped Ref or unsealed buffer is freed with no further call from its client") {
  // The blocking client sends a dropped handle's Release at once, and whatever it deferred
  // with it (a sealed buffer's Release and the seal's Finish wait for the next message): the
  // daemon frees the value although the producer then stays silent. The producer runs on a
  // thread of its own, so no other client's calls run its event loop; it blocks between steps.
  Daemon daemon;
  Client watcher = Client::connect(daemon.socket());
  uint64_t baseline = watcher.stats().bytesUsed;
  std::promise<void> sealedAndDropped, abandoned;
  std::promise<void> goOn, finish;
  std::thread producer([&]() {
    Client client = Client::connect(daemon.socket());
    {
      WriteBuffer buffer = client.create(1 << 20);
      memset(buffer.data(), 3, 1 << 20);
      Ref ref = buffer.seal();
    }
    sealedAndDropped.set_value();
    goOn.get_future().wait();  // silent: no call runs this thread's loop meanwhile
    { WriteBuffer unsealed = client.create(1 << 20); }  // dropped before seal: aborted
    abandoned.set_value();
    finish.get_future().wait();
  });
  sealedAndDropped.get_future().wait();
  CHECK(eventually([&]() { return watcher.stats().objects == 0; }, 5));
  CHECK(watcher.stats().bytesUsed == baseline);
  goOn.set_value();
  abandoned.get_future().wait();
  CHECK(eventually([&]() { return watcher.stats().bytesUsed == baseline; }, 5));
  finish.set_value();
  producer.join();
}

TEST_CASE("a shared segment's capability carries its fd once per connection, again after release") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto store = async::store(client);
  // Raw protocol, as any Cap'n Proto client sees it: put small values, view them.
  auto viewOf = [&](const char* bytes) {
    auto put = store.putRequest();
    put.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes), strlen(bytes)));
    auto ref = put.send().getRef();
    return ref.viewRequest().send().wait(io.waitScope);
  };
  auto fdOf = [&](proto::Segment::Client segment) {
    auto fd = segment.getFd().wait(io.waitScope);
    REQUIRE(fd != nullptr);
    return KJ_ASSERT_NONNULL(fd);
  };
  auto inode = [](int fd) {
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    return st.st_ino;
  };
  ino_t segmentInode;
  {
    auto first = viewOf("first value");
    auto second = viewOf("second value");
    REQUIRE(first.getPlacement().getSegmentId() == second.getPlacement().getSegmentId());
    REQUIRE_FALSE(first.getPlacement().getDedicated());
    // The same export both times: one import on our side, holding the fd from the first.
    auto a = first.getPlacement().getSegment(), b = second.getPlacement().getSegment();
    CHECK(capnp::ClientHook::from(kj::cp(a)).get() == capnp::ClientHook::from(kj::cp(b)).get());
    segmentInode = inode(fdOf(a));
    CHECK(inode(fdOf(b)) == segmentInode);
  }  // every reference to the Segment capability is dropped: its Release goes out
  io.waitScope.poll();
  client.stats();  // a round trip: the daemon has processed the Release
  kj::Maybe<kj::Promise<capnp::Response<proto::Ref::ViewResults>>> inFlight;
  {
    // A new placement in the same segment must bring the fd again (a new export).
    auto third = viewOf("third value");
    CHECK(inode(fdOf(third.getPlacement().getSegment())) == segmentInode);
    // Dropping the capability while a placement naming it is on its way: that placement's
    // capability arrives as a new import without the fd (the daemon sent it once, before).
    // Segment.reattach on it brings one.
    auto put = store.putRequest();
    put.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>("fourth"), 6));
    inFlight = kj::Promise<capnp::Response<proto::Ref::ViewResults>>(
        put.send().getRef().viewRequest().send());  // sent, not yet answered
  }  // `third` goes: our only import of the Segment capability is released after that call
  auto fourth = KJ_ASSERT_NONNULL(inFlight).wait(io.waitScope);
  auto fdless = fourth.getPlacement().getSegment();
  CHECK(fdless.getFd().wait(io.waitScope) == nullptr);
  auto again = fdless.reattachRequest().send().wait(io.waitScope).getSegment();
  CHECK(inode(fdOf(again)) == segmentInode);
}

TEST_CASE("1,000 objects put and dropped: objects back to 0, bytes_used back to start") {
  Daemon daemon("128M");
  Client client = Client::connect(daemon.socket());
  uint64_t baseline = client.stats().bytesUsed;
  {
    std::vector<Ref> refs;
    for (int i = 0; i < 1000; i++) {
      std::vector<uint8_t> value(64 + (i * 977) % 20000, uint8_t(i));
      if (i % 3 == 0) {
        refs.push_back(client.put(value.data(), value.size()));
      } else {
        refs.push_back(client.putLarge(value.data(), value.size()));
      }
    }
    Stats full = client.stats();
    CHECK(full.objects == 1000);
    CHECK(full.holders == 1000);
    CHECK(full.bytesUsed > baseline);
    CHECK(refs[500].readAll() == std::vector<uint8_t>(64 + (500 * 977) % 20000, uint8_t(500)));
  }
  Stats after = client.stats();
  CHECK(after.objects == 0);
  CHECK(after.holders == 0);
  CHECK(after.bytesUsed == baseline);
  CHECK(after.reclaimedTotal == 1000);
}

TEST_CASE("a spare shared-memory segment is pre-faulted ahead of demand") {
  Daemon daemon("64M");  // 8 MiB segments
  Client client = Client::connect(daemon.socket());
  Ref first = client.put("x", 1);
  // One segment in use plus a spare built on the threadpool (and kept: it is not rebuilt).
  REQUIRE(eventually([&]() { return client.stats().segments >= 2; }));
  Stats settled = client.stats();
  CHECK(settled.segments == 2);
  CHECK(settled.segmentBytes == uint64_t(16) << 20);
  std::vector<Ref> more;
  for (int i = 0; i < 100; i++) more.push_back(client.put("y", 1));
  CHECK(client.stats().segments == 2);  // small puts fit the first segment
}

TEST_CASE("clients wire in only the shared memory they use: a writer its value, a reader what it reads") {
  Daemon daemon("64M");  // 8 MiB segments
  Client writer = Client::connect(daemon.socket());
  Client reader = Client::connect(daemon.socket());
  const size_t size = 1 << 20;
  WriteBuffer buffer = writer.create(size);
  REQUIRE(buffer.data() != nullptr);
  // Before a single byte is written, the writer's mapping already has the value's pages (no
  // page fault per 4 KiB while writing), but not the rest of the segment: a process's wired
  // pages are torn down when it dies, before its connection closes, delaying reclaim.
  MappingUse written = mappingUse(buffer.data());
  REQUIRE(written.size == uint64_t(8) << 20);
  CHECK(written.resident >= size);
  CHECK(written.resident <= size + (128 << 10));  // 64 KiB blocks at either end
  refstore::testing::fillPattern(buffer.data(), size, 7);
  Ref ref = buffer.seal();
  // A second value in the same segment wires in only its own blocks.
  WriteBuffer second = writer.create(size);
  CHECK(mappingUse(second.data()).resident >= 2 * size);
  CHECK(mappingUse(second.data()).resident <= 2 * size + (256 << 10));

  // A reader maps the segment read-only and pays only for the pages it reads.
  View view = reader.restore(ref.share(60, 1)).view();
  CHECK(mappingUse(view.data()).resident < size);
  CHECK(refstore::testing::checkPattern(view.data(), size, 7));
  CHECK(mappingUse(view.data()).resident >= size);
}

TEST_CASE("share and restore within one process; uses are counted") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  std::string token;
  {
    Ref ref = client.put("token-value", 11);
    token = ref.share(60, 2);
  }
  // The token alone keeps the value alive.
  CHECK(client.stats().objects == 1);
  CHECK(client.stats().tokens == 1);
  CHECK(text(client.restore(token).readAll()) == "token-value");
  CHECK(text(client.restore(token).readAll()) == "token-value");
  // Used up: the lease is gone and so is the object.
  CHECK(codeOf([&]() { client.restore(token); }) == ErrorCode::NOT_FOUND);
  CHECK(client.stats().objects == 0);
}

TEST_CASE("sealAndShare and restoreView: a handoff in one round trip each, with their errors") {
  Daemon daemon;
  Client producer = Client::connect(daemon.socket());
  Client consumer = Client::connect(daemon.socket());
  const size_t size = 3 << 20;
  Ref child = producer.put("child", 5);
  std::string token;
  {
    WriteBuffer buffer = producer.create(size);
    refstore::testing::fillPattern(buffer.data(), size, 4);
    SharedValue shared = buffer.sealAndShare(60, 1, {&child});
    CHECK(buffer.data() == nullptr);  // sealed: the buffer is empty
    CHECK(codeOf([&]() { buffer.sealAndShare(60); }) == ErrorCode::FAILED_PRECONDITION);
    CHECK(shared.ref.info().state == "sealed");
    REQUIRE(shared.ref.children().size() == 1);
    token = shared.token;
  }
  // Only the token keeps the value (and, through it, the child) alive.
  CHECK(producer.stats().objects == 2);
  CHECK(producer.stats().tokens == 1);
  {
    View view = consumer.restoreView(token);
    REQUIRE(view.size() == size);
    CHECK(refstore::testing::checkPattern(view.data(), size, 4));
    // The single use is spent and no Ref was kept: the View alone pins the value.
    Stats held = producer.stats();
    CHECK(held.tokens == 0);
    CHECK(held.objects == 2);
    CHECK(codeOf([&]() { consumer.restoreView(token); }) == ErrorCode::NOT_FOUND);
  }
  CHECK(consumer.stats().objects == 1);  // the View was the last hold; the child is ours

  // restoreView reports restore's errors.
  std::string otherStore = producer.put("x", 1).share(60);  // freed again once spent or expired
  otherStore[4] = otherStore[4] == 'a' ? 'b' : 'a';
  CHECK(codeOf([&]() { consumer.restoreView(otherStore); }) == ErrorCode::WRONG_STORE);
  CHECK(codeOf([&]() { consumer.restoreView("rs1.nonsense"); }) == ErrorCode::MALFORMED);
  // A share that fails after the seal succeeded leaks nothing: the new Ref is dropped.
  uint64_t objects = producer.stats().objects;
  WriteBuffer refused = producer.create(1024);
  CHECK(codeOf([&]() { refused.sealAndShare(0); }) == ErrorCode::INVALID_ARGUMENT);
  CHECK(refused.data() == nullptr);
  CHECK(producer.stats().objects == objects);
  CHECK(daemon.alive());
}

TEST_CASE("token expiry frees memory; expired tokens get EXPIRED") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  uint64_t baseline = client.stats().bytesUsed;
  std::string token;
  {
    Ref ref = client.putLarge(std::vector<uint8_t>(256 << 10, 1).data(), 256 << 10);
    token = ref.share(1);
  }
  CHECK(client.stats().objects == 1);
  // The daemon's own timer must free it, with no client call in between.
  REQUIRE(eventually([&]() { return client.stats().objects == 0; }, 10));
  CHECK(client.stats().bytesUsed == baseline);
  CHECK(client.stats().tokens == 0);
  CHECK(codeOf([&]() { client.restore(token); }) == ErrorCode::EXPIRED);
}

TEST_CASE("forged and malformed tokens get clear errors and change nothing") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Ref ref = client.put("secret-value", 12);
  std::string token = ref.share(60);
  Stats before = client.stats();

  std::string forged = token;
  forged.back() = forged.back() == '0' ? '1' : '0';  // wrong secret
  CHECK(codeOf([&]() { client.restore(forged); }) == ErrorCode::NOT_FOUND);
  std::string otherObject = token;
  otherObject[4 + 31] = otherObject[4 + 31] == '9' ? '8' : '9';  // another serial
  CHECK(codeOf([&]() { client.restore(otherObject); }) == ErrorCode::NOT_FOUND);
  std::string otherStore = token;
  otherStore[4] = otherStore[4] == 'a' ? 'b' : 'a';  // another origin
  CHECK(codeOf([&]() { client.restore(otherStore); }) == ErrorCode::WRONG_STORE);
  for (std::string junk: {std::string(""), std::string("rs1."), std::string("hello"),
                          token.substr(0, token.size() - 1), token + "0",
                          "RS1" + token.substr(3), token.substr(0, 10) + "zz" + token.substr(12)}) {
    CHECK_MESSAGE(codeOf([&]() { client.restore(junk); }) == ErrorCode::MALFORMED, junk);
  }
  // Nothing changed, and the real token still works.
  Stats after = client.stats();
  CHECK(after.objects == before.objects);
  CHECK(after.tokens == before.tokens);
  CHECK(after.holders == before.holders);
  CHECK(text(client.restore(token).readAll()) == "secret-value");
  CHECK(daemon.alive());
}

TEST_CASE("bad sizes, ranges and ttl get clear errors; the daemon is unaffected") {
  // Without disk: a value that can never fit in memory is TOO_LARGE (with a spill directory it
  // would be file-backed instead; see pressure_test).
  Daemon daemon("32M", {"--no-spill"});
  Client client = Client::connect(daemon.socket());
  uint64_t baseline = client.stats().bytesUsed;
  CHECK(codeOf([&]() { client.create(0); }) == ErrorCode::INVALID_ARGUMENT);
  CHECK(codeOf([&]() { client.put("", 0); }) == ErrorCode::INVALID_ARGUMENT);
  CHECK(codeOf([&]() { client.create(uint64_t(1) << 40); }) == ErrorCode::TOO_LARGE);
  CHECK(codeOf([&]() { client.create(~uint64_t(0)); }) == ErrorCode::TOO_LARGE);
  {
    // Fits the capacity in principle but not next to what is already held: it waits for its
    // deadline, then fails.
    WriteBuffer big = client.create(20 << 20);
    CHECK(codeOf([&]() { client.create(20 << 20, 0.2); }) == ErrorCode::OUT_OF_MEMORY);
  }
  WriteBuffer again = client.create(20 << 20);  // freed by the abort above, so it fits again

  Ref ref = client.put("0123456789", 10);
  CHECK(codeOf([&]() { ref.read(11, 1); }) == ErrorCode::OUT_OF_RANGE);
  CHECK(ref.read(10, 5).empty());
  CHECK(text(ref.read(8, 1000)) == "89");
  CHECK(codeOf([&]() { ref.share(0); }) == ErrorCode::INVALID_ARGUMENT);
  CHECK(codeOf([&]() { ref.share(100000000); }) == ErrorCode::INVALID_ARGUMENT);
  CHECK(codeOf([&]() { again.write(20 << 20, "x", 1); }) == ErrorCode::OUT_OF_RANGE);

  Stats stats = client.stats();
  CHECK(stats.objects == 2);
  CHECK(stats.tokens == 0);
  CHECK(daemon.alive());
  CHECK(stats.bytesUsed > baseline);
}

TEST_CASE("absurd sizes are TOO_LARGE even with a spill directory") {
  Daemon daemon("32M");
  Client client = Client::connect(daemon.socket());
  CHECK(codeOf([&]() { client.create(~uint64_t(0)); }) == ErrorCode::TOO_LARGE);
  CHECK(codeOf([&]() { client.create((uint64_t(1) << 40) + 1); }) == ErrorCode::TOO_LARGE);
  CHECK(daemon.alive());
}

TEST_CASE("copy path over loopback TCP: same semantics, no shared memory") {
  int port = refstore::testing::freeTcpPort();
  Daemon daemon("64M", {"--tcp", "127.0.0.1:" + std::to_string(port)});
  Client local = Client::connect(daemon.socket());
  Client remote = Client::connect("tcp:127.0.0.1:" + std::to_string(port));
  CHECK_FALSE(remote.sharedMemory());

  const size_t size = 9 << 20;  // spans several copy-path chunks
  std::vector<uint8_t> value(size);
  refstore::testing::fillPattern(value.data(), size, 9);
  Ref written = remote.putLarge(value.data(), size);
  std::string token = written.share(60);
  CHECK(remote.restore(token).readAll() == value);
  // The local client sees the same object zero-copy.
  View view = local.restore(token).view();
  CHECK(refstore::testing::checkPattern(view.data(), size, 9));
  CHECK(codeOf([&]() { written.view(); }) == ErrorCode::FAILED_PRECONDITION);
  // restoreView fails with view's error over TCP, and the Ref its restore made is dropped.
  uint32_t holders = local.stats().holders;
  CHECK(codeOf([&]() { remote.restoreView(token); }) == ErrorCode::FAILED_PRECONDITION);
  CHECK(eventually([&]() { return local.stats().holders == holders; }, 5));
}

TEST_CASE("TCP with a cluster secret: refused until hello presents it") {
  int port = refstore::testing::freeTcpPort();
  std::string secretFile = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                           "/secret-" + std::to_string(getpid());
  FILE* f = fopen(secretFile.c_str(), "w");
  fputs("correct-horse-battery-staple\n", f);
  fclose(f);
  Daemon daemon("64M", {"--tcp", "127.0.0.1:" + std::to_string(port), "--secret-file", secretFile});
  ConnectOptions wrong;
  wrong.address = "tcp:127.0.0.1:" + std::to_string(port);
  wrong.secret = "not-the-secret";
  CHECK(codeOf([&]() { Client::connect(wrong); }) == ErrorCode::UNAUTHENTICATED);
  ConnectOptions right = wrong;
  right.secret = "correct-horse-battery-staple";
  Client client = Client::connect(right);
  CHECK(text(client.put("ok", 2).readAll()) == "ok");
}

TEST_CASE("refusing a non-loopback TCP listener without a secret") {
  // The daemon must refuse to start; run it directly and check the exit status.
  auto process = refstore::testing::spawn(
      "server/refstored", {"--socket", refstore::testing::uniqueSocketPath(), "--tcp", "0.0.0.0:0",
                           "--no-spill"});
  int status = process.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
}

TEST_CASE("listings show holders with label and pid") {
  Daemon daemon;
  ConnectOptions options;
  options.address = daemon.socket();
  options.clientName = "lister";
  Client client = Client::connect(options);
  Ref a = client.put("a", 1);
  Ref b = client.restore(a.share(60));
  auto objects = client.list();
  REQUIRE(objects.size() == 1);
  CHECK(objects[0].holders.size() == 2);
  CHECK(objects[0].holders[0].label == "lister");
  CHECK(objects[0].holders[0].pid == getpid());
  CHECK(objects[0].tokens == 1);
}

TEST_CASE("a second daemon on a live socket is refused; SIGTERM shuts down cleanly") {
  Daemon daemon;
  auto second =
      refstore::testing::spawn("server/refstored", {"--socket", daemon.socket(), "--no-spill"});
  int status = second.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
  CHECK(daemon.alive());
  int exit = daemon.stop();
  CHECK(WIFEXITED(exit));
  CHECK(WEXITSTATUS(exit) == 0);
  CHECK(daemon.log().find("shutting down") != std::string::npos);
  CHECK(access(daemon.socket().c_str(), F_OK) != 0);  // socket file removed
}

TEST_CASE("Ref.release and View.release free at once, for clients that never send Release") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Client watcher = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto store = async::store(client);
  auto put = store.putRequest();
  put.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>("released"), 8));
  auto ref = put.send().wait(io.waitScope).getRef();
  auto view = ref.viewRequest().send().wait(io.waitScope).getView();
  ref.releaseRequest().send().wait(io.waitScope);
  // The capability is still held, but the holder is gone; the View still pins the bytes.
  CHECK(watcher.stats().holders == 0);
  CHECK(watcher.stats().pinnedDead == 1);
  view.releaseRequest().send().wait(io.waitScope);
  CHECK(watcher.stats().objects == 0);
  std::string error;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    ref.readRequest().send().wait(io.waitScope);
  })) {
    error = e->getDescription();
  }
  CHECK(error.find("refstore.FAILED_PRECONDITION") != std::string::npos);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    view.placementRequest().send().wait(io.waitScope);
  })) {
    error = e->getDescription();
  }
  CHECK(error.find("View.release") != std::string::npos);
  ref.releaseRequest().send().wait(io.waitScope);  // again: nothing happens
  view.releaseRequest().send().wait(io.waitScope);
  CHECK(watcher.stats().objects == 0);
}

TEST_CASE("hello(noFileDescriptors): a Unix client whose Cap'n Proto cannot take fds gets the copy path") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  // A second, raw connection on the same loop, as such a client would make.
  auto address = io.provider->getNetwork().parseAddress("unix:" + daemon.socket()).wait(io.waitScope);
  auto stream = address->connect().wait(io.waitScope);
  capnp::TwoPartyClient rpc(*stream);
  auto store = rpc.bootstrap().castAs<proto::Store>();
  auto hello = store.helloRequest();
  hello.setNoFileDescriptors(true);
  auto reply = hello.send().wait(io.waitScope);
  CHECK_FALSE(reply.getSharedMemory());
  CHECK_FALSE(reply.getWritableSharedMemory());
  auto create = store.createRequest();
  create.setSize(16);
  auto created = create.send().wait(io.waitScope);
  CHECK(created.getPlacement().getSegmentId() == 0);  // write with WriteBuffer.write instead
  auto put = store.putRequest();
  put.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>("copy path"), 9));
  auto ref = put.send().getRef();
  std::string error;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    ref.viewRequest().send().wait(io.waitScope);
  })) {
    error = e->getDescription();
  }
  CHECK(error.find("refstore.FAILED_PRECONDITION") != std::string::npos);
  auto read = ref.readRequest();
  read.setLength(100);
  CHECK(read.send().wait(io.waitScope).getData().size() == 9);
}

namespace {

// Runs refstored with `args` (shell words) and returns its exit status and all it printed.
std::pair<int, std::string> runRefstored(const std::string& args) {
  FILE* pipe = popen(("server/refstored " + args + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  int status = pclose(pipe);
  return {status, output};
}

}  // namespace

TEST_CASE("configuration errors are one clear line and an exit code, never a stack trace") {
  Daemon daemon;
  std::string socket = refstore::testing::uniqueSocketPath();
  struct Case {
    std::string args, says;
  } cases[] = {
      {"--socket " + daemon.socket() + " --no-spill", "already listening on"},
      {"--socket " + socket + " --spill-dir " + daemon.spillDir(), "in use by another refstored"},
      {"--socket " + socket + " --no-spill --tcp 127.0.0.1:99999", "--tcp 127.0.0.1:99999"},
      {"--socket " + socket + " --no-spill --tcp 10.1.2.3:7000", "requires --secret-file"},
      {"--socket " + socket + " --memory lots", "expected a size"},
  };
  for (auto& c: cases) {
    auto [status, output] = runRefstored(c.args);
    CHECK_MESSAGE(WIFEXITED(status), c.args);
    CHECK_MESSAGE(WEXITSTATUS(status) != 0, c.args);
    CHECK_MESSAGE(output.find(c.says) != std::string::npos, c.args, ": ", output);
    CHECK_MESSAGE(output.find("Uncaught exception") == std::string::npos, output);
    CHECK_MESSAGE(output.find("stack:") == std::string::npos, output);
    // The error line, and KJ's "Try --help" hint.
    CHECK_MESSAGE(std::count(output.begin(), output.end(), '\n') <= 2, output);
  }
  CHECK(daemon.alive());
}
