// Memory pressure against a real refstored: admission control (waiting, deadlines), spilling
// to disk and restoring (verified), file-backed values larger than memory, and disk errors.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>

#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;
using refstore::testing::eventually;
using refstore::testing::listDirectory;
using refstore::testing::spawn;

namespace {

const char* HELPER = "tests/rs_helper";

ErrorCode codeOf(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("expected an Error");
  return ErrorCode::INTERNAL;
}

Ref putPattern(Client& client, size_t size, uint64_t seed) {
  WriteBuffer buffer = client.create(size);
  refstore::testing::fillPattern(buffer.data(), size, seed);
  return buffer.seal();
}

size_t countFiles(const std::string& dir, const std::string& prefix) {
  size_t n = 0;
  for (auto& name: listDirectory(dir)) n += name.rfind(prefix, 0) == 0;
  return n;
}

}  // namespace

TEST_CASE("a workload of 3x memory completes and every byte reads back identical") {
  Daemon daemon("32M");
  Client client = Client::connect(daemon.socket());
  std::vector<Ref> refs;
  for (uint64_t i = 0; i < 96; i++) refs.push_back(putPattern(client, 1 << 20, i));
  Stats peak = client.stats();
  CHECK(peak.objects == 96);
  CHECK(peak.bytesUsed <= peak.capacity);
  CHECK(peak.spilled > 0);
  CHECK(peak.spillsTotal >= 64 - 32);  // at least the excess had to go to disk
  CHECK(peak.spilledBytes > 0);
  for (uint64_t i = 0; i < 96; i++) {
    View view = refs[i].view();
    REQUIRE(view.size() == size_t(1 << 20));
    CHECK_MESSAGE(refstore::testing::checkPattern(view.data(), view.size(), i), "object ", i);
  }
  Stats after = client.stats();
  CHECK(after.restoresTotal > 0);
  CHECK(after.restoredBytesTotal >= after.restoresTotal * (1 << 20));
  refs.clear();
  CHECK(client.stats().objects == 0);
  CHECK(client.stats().spilledBytes == 0);
  // Spill files go with their objects.
  CHECK(countFiles(daemon.spillDir(), "spill-") + countFiles(daemon.spillDir(), "object-") == 0);
  CHECK(daemon.log().find("spilling started") != std::string::npos);
}

TEST_CASE("large values spilled before their deferred hash ran are hashed first and verified "
          "when they come back") {
  // Values over 1 MiB are hashed only once they have lived --hash-delay-ms (here a minute) or
  // when needed: these are spilled long before, so spilling itself must hash them, or restoring
  // would find no hash to check them against (CORRUPTED).
  Daemon daemon("32M", {"--hash-delay-ms=60000"});
  Client client = Client::connect(daemon.socket());
  std::vector<Ref> refs;
  const size_t size = 3 << 20;
  for (uint64_t i = 0; i < 24; i++) refs.push_back(putPattern(client, size, i));  // 72 MiB
  Stats peak = client.stats();
  CHECK(peak.spillsTotal > 0);
  // Each spilled value was hashed first, and only those (the delay has not passed for any).
  CHECK(peak.backgroundHashesTotal >= peak.spillsTotal);
  for (uint64_t i = 0; i < 24; i++) {
    View view = refs[i].view();
    REQUIRE(view.size() == size);
    CHECK_MESSAGE(refstore::testing::checkPattern(view.data(), view.size(), i), "object ", i);
  }
  CHECK(client.stats().restoresTotal > 0);
  CHECK(daemon.log().find("CORRUPTED") == std::string::npos);
}

TEST_CASE("an object pinned by a View is never spilled") {
  Daemon daemon("32M");
  Client client = Client::connect(daemon.socket());
  Ref pinned = putPattern(client, 2 << 20, 1234);
  View view = pinned.view();
  std::vector<Ref> others;
  for (uint64_t i = 0; i < 80; i++) others.push_back(putPattern(client, 1 << 20, i));
  CHECK(client.stats().spillsTotal > 0);
  CHECK(pinned.info().state == "sealed");  // still in memory
  CHECK(refstore::testing::checkPattern(view.data(), view.size(), 1234));
  // Unpinned and older than everything else, it is the first to go once pressure returns.
  { View gone = std::move(view); }
  for (uint64_t i = 80; i < 160; i++) others.push_back(putPattern(client, 1 << 20, i));
  CHECK(pinned.info().state == "spilled");
  CHECK(refstore::testing::checkPattern(pinned.view().data(), 2 << 20, 1234));
}

TEST_CASE("a corrupted spill file is detected, never returned silently") {
  Daemon daemon("32M");
  Client client = Client::connect(daemon.socket());
  // One large object (its own spill file) among small ones (batched).
  Ref victim = putPattern(client, 3 << 20, 77);
  std::vector<Ref> filler;
  for (uint64_t i = 0; i < 200 && victim.info().state != "spilled"; i++) {
    filler.push_back(putPattern(client, 512 << 10, i));
  }
  REQUIRE(victim.info().state == "spilled");
  REQUIRE(countFiles(daemon.spillDir(), "object-") == 1);
  for (auto& name: listDirectory(daemon.spillDir())) {
    if (name.rfind("object-", 0) != 0) continue;
    int fd = open((daemon.spillDir() + "/" + name).c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    char byte;
    REQUIRE(pread(fd, &byte, 1, 4096) == 1);
    byte ^= 0x5a;
    REQUIRE(pwrite(fd, &byte, 1, 4096) == 1);
    close(fd);
  }
  CHECK(codeOf([&]() { victim.view(); }) == ErrorCode::CORRUPTED);
  CHECK(codeOf([&]() { victim.read(0, 10); }) == ErrorCode::CORRUPTED);
  CHECK(victim.info().state == "spilled");  // not replaced by bad bytes
  CHECK(daemon.alive());
  // Others restore fine.
  View ok = filler[0].view();
  CHECK(refstore::testing::checkPattern(ok.data(), ok.size(), 0));
}

TEST_CASE("tiny objects are batched into shared spill files") {
  Daemon daemon("32M");
  Client client = Client::connect(daemon.socket());
  std::vector<Ref> refs;
  std::vector<uint8_t> value(4096);
  for (uint64_t i = 0; i < 12000; i++) {
    refstore::testing::fillPattern(value.data(), value.size(), i);
    refs.push_back(client.put(value.data(), value.size()));
  }
  Stats stats = client.stats();
  CHECK(stats.spilled > 1000);
  CHECK(stats.spillFiles < 10);
  CHECK(countFiles(daemon.spillDir(), "object-") == 0);
  for (uint64_t i: {uint64_t(0), uint64_t(1), uint64_t(5000), uint64_t(11999)}) {
    auto bytes = refs[i].readAll();
    CHECK(refstore::testing::checkPattern(bytes.data(), bytes.size(), i));
  }
}

TEST_CASE("a value larger than the whole capacity is file-backed and still zero-copy") {
  Daemon daemon("32M");
  Client client = Client::connect(daemon.socket());
  const size_t size = 48 << 20;
  {
    Ref big = putPattern(client, size, 4242);
    CHECK(client.stats().fileBackedBytes >= size);
    CHECK(client.stats().bytesUsed < size);  // not in shared memory
    CHECK(countFiles(daemon.spillDir(), "filebacked-") == 1);
    View view = big.view();
    REQUIRE(view.size() == size);
    CHECK(refstore::testing::checkPattern(view.data(), size, 4242));
  }
  // Freed promptly, but not always by the next call: if the value lived past --hash-delay-ms
  // (200 ms; a loaded machine gets there while the test writes and reads 48 MiB), the
  // background hasher holds a pin on it, and drops that pin on the event loop once it has
  // noticed the value died (within a 1 MiB step). Seen as a 5-10% flake of an immediate check.
  CHECK(eventually([&]() { return client.stats().fileBackedBytes == 0; }, 5));
  CHECK(countFiles(daemon.spillDir(), "filebacked-") == 0);
}

TEST_CASE("a waiting create proceeds as soon as another client drops its refs") {
  Daemon daemon("32M", {"--no-spill"});
  Client observer = Client::connect(daemon.socket());
  auto holder = spawn(HELPER, {"hold-refs", daemon.socket(), "28", std::to_string(1 << 20)});
  REQUIRE(holder.readLine() == "ready");
  auto waiter = spawn(HELPER, {"create-wait", daemon.socket(), std::to_string(8 << 20), "60"});
  REQUIRE(eventually([&]() { return observer.stats().queueLength == 1; }));
  CHECK(observer.stats().objects == 28);
  holder.kill(SIGKILL);
  holder.wait();
  CHECK(waiter.readLine() == "created");
  CHECK(WEXITSTATUS(waiter.wait()) == 0);
  CHECK(observer.stats().queueLength == 0);
}

TEST_CASE("a deadline expiry fails cleanly and leaves nothing allocated") {
  Daemon daemon("32M", {"--no-spill"});
  Client client = Client::connect(daemon.socket());
  std::vector<Ref> held;
  for (int i = 0; i < 28; i++) held.push_back(putPattern(client, 1 << 20, i));
  Stats before = client.stats();
  CHECK(codeOf([&]() { client.create(8 << 20, 0.3); }) == ErrorCode::OUT_OF_MEMORY);
  CHECK(codeOf([&]() { client.put(std::string(8 << 20, 'x').data(), 8 << 20, {}, 0.3); }) ==
        ErrorCode::OUT_OF_MEMORY);
  Stats after = client.stats();
  CHECK(after.queueLength == 0);
  CHECK(after.objects == before.objects);
  CHECK(after.bytesUsed == before.bytesUsed);
  // Freeing memory lets the same request through at once.
  held.erase(held.begin() + 10, held.end());
  WriteBuffer fits = client.create(8 << 20, 0.3);
  CHECK(fits.size() == size_t(8 << 20));
}

TEST_CASE("leftover spill files from a crashed daemon are removed at start") {
  std::string dir = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                    "/leftovers-" + std::to_string(getpid());
  mkdir(dir.c_str(), 0700);
  for (const char* name: {"spill-3.dat", "object-9.dat", "filebacked-8388610.dat", "keep.txt"}) {
    int fd = open((dir + "/" + name).c_str(), O_CREAT | O_WRONLY, 0600);
    REQUIRE(write(fd, "junk", 4) == 4);
    close(fd);
  }
  Daemon daemon("32M", {"--spill-dir", dir});
  auto names = listDirectory(dir);
  CHECK(std::find(names.begin(), names.end(), "keep.txt") != names.end());
  CHECK(countFiles(dir, "spill-") + countFiles(dir, "object-") + countFiles(dir, "filebacked-") ==
        0);
}

TEST_CASE("a full disk gives OUT_OF_DISK, not a crash") {
  // RLIMIT_FSIZE 16 MiB: shared-memory segments (8 MiB) still work, a 48 MiB file does not.
  Daemon daemon("32M", {}, 16 << 20);
  Client client = Client::connect(daemon.socket());
  CHECK(codeOf([&]() { client.create(48 << 20); }) == ErrorCode::OUT_OF_DISK);
  CHECK(daemon.alive());
  CHECK(client.stats().fileBackedBytes == 0);
  CHECK(countFiles(daemon.spillDir(), "filebacked-") == 0);
  Ref fine = putPattern(client, 1 << 20, 5);
  CHECK(refstore::testing::checkPattern(fine.view().data(), 1 << 20, 5));
}

TEST_CASE("spills that hit a full disk fail softly: counted, nothing lost, daemon alive") {
  // RLIMIT_FSIZE 9 MiB: 8 MiB shared-memory segments still fit; spill files hit the limit.
  Daemon daemon("32M", {}, 9 << 20);
  Client client = Client::connect(daemon.socket());
  std::vector<Ref> refs;
  std::vector<uint64_t> seeds;
  for (uint64_t i = 0; i < 64; i++) {
    try {
      WriteBuffer buffer = client.create(1 << 20, 0.5);
      refstore::testing::fillPattern(buffer.data(), buffer.size(), i);
      refs.push_back(buffer.seal());
      seeds.push_back(i);
    } catch (const Error& e) {
      // The only acceptable failure: no room in memory by the deadline.
      CHECK_MESSAGE(e.code() == ErrorCode::OUT_OF_MEMORY, e.what());
    }
  }
  Stats stats = client.stats();
  CHECK(stats.spillFailuresTotal > 0);
  CHECK(stats.queueLength == 0);
  CHECK(daemon.alive());
  CHECK(daemon.log().find("could not spill") != std::string::npos);
  // Everything that was accepted is intact (in memory, or in what did fit on disk).
  for (size_t i = 0; i < refs.size(); i++) {
    auto bytes = refs[i].readAll();
    CHECK_MESSAGE(refstore::testing::checkPattern(bytes.data(), bytes.size(), seeds[i]),
                  "object ", seeds[i]);
  }
}
