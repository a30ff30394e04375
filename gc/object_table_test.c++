// Unit tests for gc/object_id.h and gc/object_table.h: every public method, its refusals and
// its edge cases. The randomized cross-check against a reference model is in
// object_table_model_test.c++.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <limits>
#include <set>
#include <stdexcept>
#include <unordered_set>
#include <vector>

#include "gc/object_id.h"
#include "gc/object_table.h"

using namespace refstore::gc;

namespace {

constexpr uint64_t kEpoch = 0x0123456789abcdefULL;

// A table whose reclaim callback records every reclaimed record, in order.
struct Fixture {
  std::vector<ObjectRecord> reclaimed;
  ObjectTable table{kEpoch, [this](const ObjectRecord& r) { reclaimed.push_back(r); }};

  size_t reclaimCount(ObjectId id) const {
    return std::count_if(reclaimed.begin(), reclaimed.end(),
                         [&](const ObjectRecord& r) { return r.id == id; });
  }
};

// Runs `body` in a child process and reports whether it died of SIGABRT.
bool abortsInChild(const std::function<void()>& body) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    // doctest installs crash handlers that would report the abort as a failure from inside the
    // child; restore the default so the parent sees the signal itself.
    signal(SIGABRT, SIG_DFL);
    std::freopen("/dev/null", "w", stderr);  // keep the expected abort message out of the log
    body();
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

uint64_t sumPerState(const ObjectTable::Stats& s) {
  uint64_t n = 0;
  for (uint64_t c : s.perState) n += c;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ObjectId

TEST_CASE("ObjectId: equality and ordering compare hi first, then lo") {
  ObjectId a{1, 5}, b{1, 6}, c{2, 0}, a2{1, 5};
  CHECK(a == a2);
  CHECK_FALSE(a != a2);
  CHECK(a != b);
  CHECK(a < b);
  CHECK(b < c);  // hi dominates even though lo is smaller
  CHECK(a < c);
  CHECK(c > a);
  CHECK(a <= a2);
  CHECK(a >= a2);
  CHECK_FALSE(b < a);
  CHECK_FALSE(a > b);
  std::set<ObjectId> ordered{c, b, a};
  CHECK(std::vector<ObjectId>(ordered.begin(), ordered.end()) == std::vector<ObjectId>{a, b, c});
}

TEST_CASE("ObjectIdHash: usable in unordered containers and mixes both halves") {
  ObjectIdHash h;
  CHECK(h(ObjectId{1, 2}) == h(ObjectId{1, 2}));
  CHECK(h(ObjectId{1, 2}) != h(ObjectId{2, 1}));
  CHECK(h(ObjectId{0, 1}) != h(ObjectId{1, 1}));
  std::unordered_set<size_t> hashes;
  for (uint64_t lo = 1; lo <= 1000; ++lo) hashes.insert(h(ObjectId{kEpoch, lo}));
  for (uint64_t hi = 1; hi <= 1000; ++hi) hashes.insert(h(ObjectId{hi, 1}));
  CHECK(hashes.size() == 2000);  // no collisions among sequential ids
  std::unordered_set<ObjectId, ObjectIdHash> set{{1, 1}, {1, 1}, {1, 2}};
  CHECK(set.size() == 2);
}

TEST_CASE("toHex: 32 lowercase digits, hi then lo, zero padded") {
  CHECK(toHex(ObjectId{0, 0}) == std::string(32, '0'));
  CHECK(toHex(ObjectId{0x0123456789abcdefULL, 0xfedcba9876543210ULL}) ==
        "0123456789abcdeffedcba9876543210");
  CHECK(toHex(ObjectId{1, 2}) == "00000000000000010000000000000002");
  CHECK(toHex(ObjectId{~0ULL, ~0ULL}) == std::string(32, 'f'));
}

TEST_CASE("parseHex: round trip, either case, strict format") {
  ObjectId id{0xdeadbeef00000001ULL, 0x00000000cafef00dULL};
  ObjectId out{7, 7};
  REQUIRE(parseHex(toHex(id), &out));
  CHECK(out == id);

  REQUIRE(parseHex("0123456789ABCDEFFEDCBA9876543210", &out));
  CHECK(out == ObjectId{0x0123456789abcdefULL, 0xfedcba9876543210ULL});

  const ObjectId before = out;
  CHECK_FALSE(parseHex("", &out));
  CHECK_FALSE(parseHex("0123456789abcdeffedcba987654321", &out));    // 31 digits
  CHECK_FALSE(parseHex("0123456789abcdeffedcba98765432100", &out));  // 33 digits
  CHECK_FALSE(parseHex("0123456789abcdeffedcba987654321g", &out));   // bad digit at the end
  CHECK_FALSE(parseHex("x123456789abcdeffedcba9876543210", &out));   // bad digit at the start
  CHECK_FALSE(parseHex("0x23456789abcdeffedcba9876543210", &out));   // no prefix allowed
  CHECK_FALSE(parseHex(" 123456789abcdeffedcba9876543210", &out));
  CHECK(out == before);  // failures leave the output untouched
}

// ---------------------------------------------------------------------------------------------
// stateName

TEST_CASE("stateName: every state has its lowercase name; out of range is 'unknown'") {
  CHECK(std::string(stateName(ObjectState::CREATING)) == "creating");
  CHECK(std::string(stateName(ObjectState::SEALED)) == "sealed");
  CHECK(std::string(stateName(ObjectState::PROMISED)) == "promised");
  CHECK(std::string(stateName(ObjectState::FAILED)) == "failed");
  CHECK(std::string(stateName(ObjectState::SPILLED)) == "spilled");
  CHECK(std::string(stateName(ObjectState::REMOTE)) == "remote");
  CHECK(std::string(stateName(static_cast<ObjectState>(200))) == "unknown");
}

TEST_CASE("secretEquals compares both halves") {
  CHECK(secretEquals(Secret{1, 2}, Secret{1, 2}));
  CHECK_FALSE(secretEquals(Secret{1, 2}, Secret{1, 3}));
  CHECK_FALSE(secretEquals(Secret{1, 2}, Secret{0, 2}));
}

// ---------------------------------------------------------------------------------------------
// create / createSealed

TEST_CASE("create: CREATING object with one writer holder and ids from the epoch counter") {
  Fixture f;
  auto a = f.table.create(100, 0xaaa, /*creator=*/7, /*now=*/1000);
  auto b = f.table.create(5, 0xbbb, 8, 1001);
  CHECK(a.id == ObjectId{kEpoch, 1});
  CHECK(b.id == ObjectId{kEpoch, 2});
  CHECK(a.writer != 0);
  CHECK(b.writer != 0);
  CHECK(a.writer != b.writer);

  const ObjectRecord* r = f.table.find(a.id);
  REQUIRE(r != nullptr);
  CHECK(r->id == a.id);
  CHECK(r->size == 100);
  CHECK(r->userData == 0xaaa);
  CHECK(r->state == ObjectState::CREATING);
  CHECK(r->hashHi == 0);
  CHECK(r->hashLo == 0);
  CHECK(r->holders == 1);
  CHECK(r->leases == 0);
  CHECK(r->pins == 0);
  CHECK_FALSE(r->dead);
  CHECK(r->createdAt == 1000);
  CHECK(ObjectTable::refCount(*r) == 1);

  auto hs = f.table.holdersOf(a.id);
  REQUIRE(hs.size() == 1);
  CHECK(hs[0] == std::make_pair(a.writer, ClientId{7}));

  auto s = f.table.stats();
  CHECK(s.objects == 2);
  CHECK(f.table.size() == 2);
  CHECK(s.liveBytes == 105);
  CHECK(s.holders == 2);
  CHECK(s.leases == 0);
  CHECK(s.deadPinned == 0);
  CHECK(s.perState[size_t(ObjectState::CREATING)] == 2);
  CHECK(sumPerState(s) == 2);
  CHECK(f.reclaimed.empty());
}

TEST_CASE("createSealed: SEALED immediately with its hash and one holder") {
  Fixture f;
  auto c = f.table.createSealed(64, 0x11, 0x22, 0x33, 9, 50);
  const ObjectRecord* r = f.table.find(c.id);
  REQUIRE(r != nullptr);
  CHECK(r->state == ObjectState::SEALED);
  CHECK(r->hashHi == 0x11);
  CHECK(r->hashLo == 0x22);
  CHECK(r->userData == 0x33);
  CHECK(r->holders == 1);
  CHECK(r->createdAt == 50);
  CHECK(f.table.holdersOf(c.id) == std::vector<std::pair<HolderId, ClientId>>{{c.writer, 9}});
  CHECK(f.table.stats().perState[size_t(ObjectState::SEALED)] == 1);
  CHECK(f.table.stats().perState[size_t(ObjectState::CREATING)] == 0);
  CHECK_FALSE(f.table.seal(c.id, 1, 2));  // already sealed
}

TEST_CASE("ids are never reused, even after reclamation") {
  Fixture f;
  auto a = f.table.create(1, 0, 1, 0);
  REQUIRE(f.table.removeHolder(a.writer));
  auto b = f.table.create(1, 0, 1, 0);
  CHECK(b.id != a.id);
  CHECK(b.writer != a.writer);
  CHECK(f.table.find(a.id) == nullptr);
}

// ---------------------------------------------------------------------------------------------
// seal

TEST_CASE("seal: CREATING -> SEALED once; refuses unknown, foreign-epoch and dead objects") {
  Fixture f;
  auto a = f.table.create(10, 0, 1, 0);
  CHECK(f.table.seal(a.id, 0xabc, 0xdef));
  const ObjectRecord* r = f.table.find(a.id);
  CHECK(r->state == ObjectState::SEALED);
  CHECK(r->hashHi == 0xabc);
  CHECK(r->hashLo == 0xdef);
  CHECK(f.table.stats().perState[size_t(ObjectState::SEALED)] == 1);
  CHECK(f.table.stats().perState[size_t(ObjectState::CREATING)] == 0);

  CHECK_FALSE(f.table.seal(a.id, 1, 1));  // second seal changes nothing
  CHECK(r->hashHi == 0xabc);
  CHECK(r->hashLo == 0xdef);

  CHECK_FALSE(f.table.seal(ObjectId{kEpoch, 999}, 1, 1));
  CHECK_FALSE(f.table.seal(ObjectId{kEpoch + 1, a.id.lo}, 1, 1));  // same counter, other daemon

  auto d = f.table.create(10, 0, 1, 0);  // dead-but-pinned: still CREATING, but frozen
  REQUIRE(f.table.pin(d.id));
  REQUIRE(f.table.removeHolder(d.writer));
  REQUIRE(f.table.find(d.id)->dead);
  CHECK_FALSE(f.table.seal(d.id, 1, 1));
  CHECK(f.table.find(d.id)->state == ObjectState::CREATING);
}

// ---------------------------------------------------------------------------------------------
// addHolder / removeHolder

TEST_CASE("addHolder/removeHolder: counting, listing and reclaim on the last reference") {
  Fixture f;
  auto a = f.table.create(10, 0x5, 1, 0);
  HolderId h2 = f.table.addHolder(a.id, 2);
  HolderId h3 = f.table.addHolder(a.id, 3);
  CHECK(h2 != 0);
  CHECK(h3 != 0);
  CHECK(h2 != h3);
  CHECK(h2 != a.writer);
  CHECK(f.table.find(a.id)->holders == 3);
  CHECK(f.table.stats().holders == 3);

  auto hs = f.table.holdersOf(a.id);
  std::sort(hs.begin(), hs.end());
  std::vector<std::pair<HolderId, ClientId>> expect{{a.writer, 1}, {h2, 2}, {h3, 3}};
  std::sort(expect.begin(), expect.end());
  CHECK(hs == expect);

  // Remove from the middle of the chain, then the ends.
  CHECK(f.table.removeHolder(h2));
  hs = f.table.holdersOf(a.id);
  std::sort(hs.begin(), hs.end());
  expect = {{a.writer, 1}, {h3, 3}};
  std::sort(expect.begin(), expect.end());
  CHECK(hs == expect);
  CHECK_FALSE(f.table.removeHolder(h2));  // double remove: no effect
  CHECK(f.table.find(a.id)->holders == 2);

  CHECK(f.table.removeHolder(a.writer));
  CHECK(f.table.holdersOf(a.id) == std::vector<std::pair<HolderId, ClientId>>{{h3, 3}});
  CHECK(f.reclaimed.empty());

  CHECK(f.table.removeHolder(h3));
  CHECK(f.table.find(a.id) == nullptr);
  REQUIRE(f.reclaimed.size() == 1);
  const ObjectRecord& r = f.reclaimed[0];
  CHECK(r.id == a.id);
  CHECK(r.size == 10);
  CHECK(r.userData == 0x5);
  CHECK(r.dead);
  CHECK(r.holders == 0);
  CHECK(r.leases == 0);
  CHECK(r.pins == 0);
  CHECK(f.table.holdersOf(a.id).empty());

  auto s = f.table.stats();
  CHECK(s.objects == 0);
  CHECK(s.liveBytes == 0);
  CHECK(s.holders == 0);
  CHECK(sumPerState(s) == 0);

  CHECK_FALSE(f.table.removeHolder(h3));  // still idempotent after reclaim
  CHECK_FALSE(f.table.removeHolder(0));
  CHECK_FALSE(f.table.removeHolder(123456));
  CHECK(f.reclaimed.size() == 1);
}

TEST_CASE("addHolder: refuses unknown, foreign and dead objects") {
  Fixture f;
  CHECK(f.table.addHolder(ObjectId{kEpoch, 1}, 1) == 0);
  auto a = f.table.create(1, 0, 1, 0);
  CHECK(f.table.addHolder(ObjectId{kEpoch ^ 1, a.id.lo}, 1) == 0);
  REQUIRE(f.table.pin(a.id));
  REQUIRE(f.table.removeHolder(a.writer));
  CHECK(f.table.addHolder(a.id, 1) == 0);  // dead-but-pinned
  CHECK(f.table.find(a.id)->holders == 0);
  CHECK(f.table.stats().holders == 0);
}

TEST_CASE("holders of different objects are independent") {
  Fixture f;
  auto a = f.table.create(1, 0, 1, 0);
  auto b = f.table.create(2, 0, 1, 0);
  HolderId hb = f.table.addHolder(b.id, 4);
  REQUIRE(f.table.removeHolder(a.writer));
  CHECK(f.reclaimCount(a.id) == 1);
  CHECK(f.table.find(b.id)->holders == 2);
  CHECK(f.table.removeHolder(b.writer));
  CHECK(f.table.holdersOf(b.id) == std::vector<std::pair<HolderId, ClientId>>{{hb, 4}});
}

// ---------------------------------------------------------------------------------------------
// Leases

TEST_CASE("addLease keeps an object alive after its holders are gone; refuses unknown/dead") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  CHECK(f.table.addLease(a.id, Secret{1, 2}, 100, 0));
  CHECK(f.table.find(a.id)->leases == 1);
  CHECK(f.table.stats().leases == 1);
  REQUIRE(f.table.removeHolder(a.writer));
  REQUIRE(f.table.find(a.id) != nullptr);
  CHECK_FALSE(f.table.find(a.id)->dead);
  CHECK(ObjectTable::refCount(*f.table.find(a.id)) == 1);
  CHECK(f.reclaimed.empty());

  CHECK_FALSE(f.table.addLease(ObjectId{kEpoch, 42}, Secret{1, 2}, 100, 0));
  auto d = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.pin(d.id));
  REQUIRE(f.table.removeHolder(d.writer));
  CHECK_FALSE(f.table.addLease(d.id, Secret{1, 2}, 100, 0));
  CHECK(f.table.stats().leases == 1);
}

TEST_CASE("redeemLease: OK adds a holder for the redeeming client") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{10, 20}, 100, 0));
  HolderId h = 777;
  CHECK(f.table.redeemLease(a.id, Secret{10, 20}, 50, 5, &h) == RedeemResult::OK);
  CHECK(h != 0);
  CHECK(h != a.writer);
  CHECK(f.table.find(a.id)->holders == 2);
  CHECK(f.table.find(a.id)->leases == 1);  // unlimited uses: lease stays
  auto hs = f.table.holdersOf(a.id);
  CHECK(std::find(hs.begin(), hs.end(), std::make_pair(h, ClientId{5})) != hs.end());
  // Unlimited: redeemable again.
  HolderId h2 = 0;
  CHECK(f.table.redeemLease(a.id, Secret{10, 20}, 99, 6, &h2) == RedeemResult::OK);
  CHECK(h2 != 0);
  CHECK(h2 != h);
  CHECK(f.table.find(a.id)->leases == 1);
}

TEST_CASE("redeemLease: wrong secret, wrong object or unknown object is NOT_FOUND") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  auto b = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{10, 20}, 100, 1));
  HolderId h = 777;
  CHECK(f.table.redeemLease(a.id, Secret{10, 21}, 0, 5, &h) == RedeemResult::NOT_FOUND);
  CHECK(h == 0);
  CHECK(f.table.redeemLease(a.id, Secret{11, 20}, 0, 5, &h) == RedeemResult::NOT_FOUND);
  CHECK(f.table.redeemLease(b.id, Secret{10, 20}, 0, 5, &h) == RedeemResult::NOT_FOUND);
  CHECK(f.table.redeemLease(ObjectId{kEpoch, 99}, Secret{10, 20}, 0, 5, &h) ==
        RedeemResult::NOT_FOUND);
  CHECK(f.table.redeemLease(ObjectId{kEpoch + 1, a.id.lo}, Secret{10, 20}, 0, 5, &h) ==
        RedeemResult::NOT_FOUND);
  // Nothing was consumed by the failures.
  CHECK(f.table.find(a.id)->leases == 1);
  CHECK(f.table.find(a.id)->holders == 1);
  CHECK(f.table.redeemLease(a.id, Secret{10, 20}, 0, 5, &h) == RedeemResult::OK);
}

TEST_CASE("redeemLease: the last use removes the lease but never reclaims the object") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{3, 4}, 100, 2));
  REQUIRE(f.table.removeHolder(a.writer));  // the lease is now the only reference

  HolderId h1 = 0, h2 = 0, h3 = 0;
  CHECK(f.table.redeemLease(a.id, Secret{3, 4}, 10, 5, &h1) == RedeemResult::OK);
  CHECK(f.table.find(a.id)->leases == 1);
  CHECK(f.table.redeemLease(a.id, Secret{3, 4}, 10, 6, &h2) == RedeemResult::OK);
  REQUIRE(f.table.find(a.id) != nullptr);
  CHECK(f.table.find(a.id)->leases == 0);
  CHECK(f.table.find(a.id)->holders == 2);
  CHECK(f.table.stats().leases == 0);
  CHECK(f.reclaimed.empty());
  CHECK(f.table.redeemLease(a.id, Secret{3, 4}, 10, 7, &h3) == RedeemResult::NOT_FOUND);
  CHECK(h3 == 0);
  CHECK(f.table.nextLeaseExpiry() == std::nullopt);

  CHECK(f.table.removeHolder(h1));
  CHECK(f.table.removeHolder(h2));
  CHECK(f.reclaimCount(a.id) == 1);
}

TEST_CASE("redeemLease: a single-use lease that is the only reference hands over the object") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{5, 6}, 100, 1));
  REQUIRE(f.table.removeHolder(a.writer));  // lease is the sole reference, and has one use
  HolderId h = 0;
  CHECK(f.table.redeemLease(a.id, Secret{5, 6}, 10, 9, &h) == RedeemResult::OK);
  CHECK(h != 0);
  const ObjectRecord* r = f.table.find(a.id);
  REQUIRE(r != nullptr);
  CHECK_FALSE(r->dead);
  CHECK(r->leases == 0);
  CHECK(r->holders == 1);
  CHECK(f.table.holdersOf(a.id) == std::vector<std::pair<HolderId, ClientId>>{{h, 9}});
  CHECK(f.reclaimed.empty());
  CHECK(f.table.removeHolder(h));
  CHECK(f.reclaimCount(a.id) == 1);
}

TEST_CASE("redeemLease: expiry <= now is EXPIRED, removes the lease, and may reclaim") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{1, 1}, 100, 0));
  REQUIRE(f.table.addLease(a.id, Secret{2, 2}, 200, 0));
  REQUIRE(f.table.removeHolder(a.writer));

  HolderId h = 5;
  CHECK(f.table.redeemLease(a.id, Secret{1, 1}, 99, 5, &h) == RedeemResult::OK);  // just before
  REQUIRE(f.table.removeHolder(h));
  CHECK(f.table.redeemLease(a.id, Secret{1, 1}, 100, 5, &h) == RedeemResult::EXPIRED);  // at
  CHECK(h == 0);
  CHECK(f.table.find(a.id)->leases == 1);
  CHECK(f.table.nextLeaseExpiry() == MonoMillis{200});
  CHECK(f.table.redeemLease(a.id, Secret{1, 1}, 100, 5, &h) == RedeemResult::NOT_FOUND);
  CHECK(f.reclaimed.empty());

  // Expiring the last reference reclaims at once.
  CHECK(f.table.redeemLease(a.id, Secret{2, 2}, 1000, 5, &h) == RedeemResult::EXPIRED);
  CHECK(f.table.find(a.id) == nullptr);
  CHECK(f.reclaimCount(a.id) == 1);
  CHECK(f.table.stats().leases == 0);
}

TEST_CASE("redeemLease picks the lease with the matching secret among several") {
  Fixture f;
  auto a = f.table.create(8, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{1, 1}, 100, 1));
  REQUIRE(f.table.addLease(a.id, Secret{2, 2}, 50, 1));
  REQUIRE(f.table.addLease(a.id, Secret{3, 3}, 300, 1));
  HolderId h = 0;
  CHECK(f.table.redeemLease(a.id, Secret{2, 2}, 60, 5, &h) == RedeemResult::EXPIRED);
  CHECK(f.table.redeemLease(a.id, Secret{3, 3}, 60, 5, &h) == RedeemResult::OK);
  CHECK(f.table.find(a.id)->leases == 1);
  CHECK(f.table.nextLeaseExpiry() == MonoMillis{100});
  CHECK(f.table.redeemLease(a.id, Secret{1, 1}, 60, 5, &h) == RedeemResult::OK);
  CHECK(f.table.find(a.id)->leases == 0);
}

TEST_CASE("expireLeases / nextLeaseExpiry: ordered by expiry, boundary inclusive, reclaims") {
  Fixture f;
  CHECK(f.table.nextLeaseExpiry() == std::nullopt);
  CHECK(f.table.expireLeases(1000) == 0);

  auto a = f.table.create(1, 0, 1, 0);
  auto b = f.table.create(2, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{1, 0}, 300, 0));
  REQUIRE(f.table.addLease(a.id, Secret{2, 0}, 100, 0));
  REQUIRE(f.table.addLease(b.id, Secret{3, 0}, 100, 0));  // same expiry as another lease
  REQUIRE(f.table.addLease(b.id, Secret{4, 0}, 200, 0));
  REQUIRE(f.table.removeHolder(a.writer));
  REQUIRE(f.table.removeHolder(b.writer));
  CHECK(f.table.nextLeaseExpiry() == MonoMillis{100});

  CHECK(f.table.expireLeases(99) == 0);
  CHECK(f.table.expireLeases(100) == 2);  // both leases at exactly 100
  CHECK(f.table.nextLeaseExpiry() == MonoMillis{200});
  CHECK(f.table.find(a.id)->leases == 1);
  CHECK(f.table.find(b.id)->leases == 1);
  CHECK(f.reclaimed.empty());

  CHECK(f.table.expireLeases(250) == 1);
  CHECK(f.table.find(b.id) == nullptr);
  CHECK(f.reclaimCount(b.id) == 1);
  CHECK(f.table.nextLeaseExpiry() == MonoMillis{300});

  CHECK(f.table.expireLeases(std::numeric_limits<MonoMillis>::max()) == 1);
  CHECK(f.reclaimCount(a.id) == 1);
  CHECK(f.table.nextLeaseExpiry() == std::nullopt);
  CHECK(f.table.size() == 0);
  CHECK(f.table.stats().leases == 0);
}

TEST_CASE("expireLeases does not reclaim objects that still have holders") {
  Fixture f;
  auto a = f.table.create(1, 0, 1, 0);
  REQUIRE(f.table.addLease(a.id, Secret{1, 0}, 10, 0));
  CHECK(f.table.expireLeases(10) == 1);
  REQUIRE(f.table.find(a.id) != nullptr);
  CHECK_FALSE(f.table.find(a.id)->dead);
  CHECK(f.reclaimed.empty());
}

TEST_CASE("expireLeases reclaims many objects in one call, each exactly once") {
  Fixture f;
  std::vector<ObjectId> ids;
  for (int i = 0; i < 50; ++i) {
    auto c = f.table.create(1, uint64_t(i), 1, 0);
    REQUIRE(f.table.addLease(c.id, Secret{uint64_t(i), 1}, 10 + i % 5, 0));
    REQUIRE(f.table.removeHolder(c.writer));
    ids.push_back(c.id);
  }
  CHECK(f.table.expireLeases(100) == 50);
  CHECK(f.reclaimed.size() == 50);
  for (ObjectId id : ids) CHECK(f.reclaimCount(id) == 1);
  CHECK(f.table.size() == 0);
}

// ---------------------------------------------------------------------------------------------
// pin / unpin

TEST_CASE("pin/unpin on a live object only counts pins") {
  Fixture f;
  auto a = f.table.create(1, 0, 1, 0);
  CHECK(f.table.pin(a.id));
  CHECK(f.table.pin(a.id));
  CHECK(f.table.find(a.id)->pins == 2);
  CHECK(ObjectTable::refCount(*f.table.find(a.id)) == 1);  // pins are not references
  CHECK(f.table.unpin(a.id));
  CHECK(f.table.unpin(a.id));
  CHECK_FALSE(f.table.unpin(a.id));  // not pinned
  CHECK(f.table.find(a.id)->pins == 0);
  CHECK(f.reclaimed.empty());
  CHECK_FALSE(f.table.pin(ObjectId{kEpoch, 99}));
  CHECK_FALSE(f.table.unpin(ObjectId{kEpoch, 99}));
  CHECK_FALSE(f.table.pin(ObjectId{0, a.id.lo}));
}

TEST_CASE("dead-but-pinned: unreferenced object waits for its last unpin") {
  Fixture f;
  auto a = f.table.create(40, 0x9, 1, 0);
  f.table.create(2, 0, 1, 0);  // a live bystander, to check the stats separate dead from live
  REQUIRE(f.table.pin(a.id));
  REQUIRE(f.table.pin(a.id));
  REQUIRE(f.table.removeHolder(a.writer));

  const ObjectRecord* r = f.table.find(a.id);
  REQUIRE(r != nullptr);
  CHECK(r->dead);
  CHECK(r->pins == 2);
  CHECK(ObjectTable::refCount(*r) == 0);
  auto s = f.table.stats();
  CHECK(s.objects == 2);
  CHECK(s.deadPinned == 1);
  CHECK(s.liveBytes == 2);  // dead bytes are not live
  CHECK(sumPerState(s) == 2);
  CHECK(f.reclaimed.empty());

  // Dead objects accept nothing new.
  CHECK_FALSE(f.table.pin(a.id));
  CHECK(f.table.addHolder(a.id, 1) == 0);
  CHECK_FALSE(f.table.addLease(a.id, Secret{1, 1}, 100, 0));
  HolderId h = 3;
  CHECK(f.table.redeemLease(a.id, Secret{1, 1}, 0, 1, &h) == RedeemResult::NOT_FOUND);
  CHECK(f.table.holdersOf(a.id).empty());

  CHECK(f.table.unpin(a.id));
  CHECK(f.table.find(a.id) != nullptr);
  CHECK(f.reclaimed.empty());
  CHECK(f.table.unpin(a.id));
  CHECK(f.table.find(a.id) == nullptr);
  REQUIRE(f.reclaimed.size() == 1);
  CHECK(f.reclaimed[0].id == a.id);
  CHECK(f.reclaimed[0].userData == 0x9);
  CHECK(f.reclaimed[0].pins == 0);
  CHECK(f.reclaimed[0].dead);
  CHECK_FALSE(f.table.unpin(a.id));

  s = f.table.stats();
  CHECK(s.objects == 1);
  CHECK(s.deadPinned == 0);
  CHECK(s.liveBytes == 2);
}

// ---------------------------------------------------------------------------------------------
// find / forEach / stats

TEST_CASE("forEach visits every object, live and dead-pinned, exactly once") {
  Fixture f;
  auto a = f.table.create(1, 0, 1, 0);
  auto b = f.table.createSealed(2, 0, 0, 0, 1, 0);
  auto c = f.table.create(3, 0, 1, 0);
  REQUIRE(f.table.pin(c.id));
  REQUIRE(f.table.removeHolder(c.writer));
  std::vector<ObjectId> seen;
  f.table.forEach([&](const ObjectRecord& r) { seen.push_back(r.id); });
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<ObjectId>{a.id, b.id, c.id});

  Fixture empty;
  int calls = 0;
  empty.table.forEach([&](const ObjectRecord&) { ++calls; });
  CHECK(calls == 0);
}

TEST_CASE("stats track every counter through a mixed lifecycle") {
  Fixture f;
  auto a = f.table.create(10, 0, 1, 0);
  auto b = f.table.createSealed(20, 1, 1, 0, 1, 0);
  HolderId hb = f.table.addHolder(b.id, 2);
  REQUIRE(f.table.addLease(a.id, Secret{1, 1}, 100, 0));
  REQUIRE(f.table.seal(a.id, 1, 2));
  auto s = f.table.stats();
  CHECK(s.objects == 2);
  CHECK(s.liveBytes == 30);
  CHECK(s.holders == 3);
  CHECK(s.leases == 1);
  CHECK(s.deadPinned == 0);
  CHECK(s.perState[size_t(ObjectState::SEALED)] == 2);
  CHECK(s.perState[size_t(ObjectState::CREATING)] == 0);

  REQUIRE(f.table.pin(b.id));
  REQUIRE(f.table.removeHolder(b.writer));
  REQUIRE(f.table.removeHolder(hb));
  s = f.table.stats();
  CHECK(s.objects == 2);
  CHECK(s.liveBytes == 10);
  CHECK(s.holders == 1);
  CHECK(s.deadPinned == 1);

  REQUIRE(f.table.unpin(b.id));
  REQUIRE(f.table.removeHolder(a.writer));
  CHECK(f.table.expireLeases(100) == 1);
  s = f.table.stats();
  CHECK(s.objects == 0);
  CHECK(s.liveBytes == 0);
  CHECK(s.holders == 0);
  CHECK(s.leases == 0);
  CHECK(s.deadPinned == 0);
  CHECK(sumPerState(s) == 0);
  CHECK(f.reclaimed.size() == 2);
}

// ---------------------------------------------------------------------------------------------
// Reclaim callback contract

TEST_CASE("the callback runs after the object left the table and may read the table") {
  std::vector<bool> foundDuringCallback;
  std::vector<uint64_t> objectsDuringCallback;
  ObjectTable* tp = nullptr;
  ObjectTable t(kEpoch, [&](const ObjectRecord& r) {
    foundDuringCallback.push_back(tp->find(r.id) != nullptr);
    objectsDuringCallback.push_back(tp->stats().objects);
    int visited = 0;
    tp->forEach([&](const ObjectRecord&) { ++visited; });  // nested read is allowed
    CHECK(uint64_t(visited) == tp->size());
  });
  tp = &t;
  auto a = t.create(1, 0, 1, 0);
  auto b = t.create(1, 0, 1, 0);
  REQUIRE(t.removeHolder(a.writer));
  CHECK(foundDuringCallback == std::vector<bool>{false});
  CHECK(objectsDuringCallback == std::vector<uint64_t>{1});
  // The guard was released: mutating after the callback returned is fine.
  CHECK(t.addHolder(b.id, 2) != 0);
}

TEST_CASE("an empty callback is allowed") {
  ObjectTable t(kEpoch, nullptr);
  auto a = t.create(1, 0, 1, 0);
  CHECK(t.removeHolder(a.writer));
  CHECK(t.size() == 0);
}

TEST_CASE("mutating from inside the reclaim callback aborts") {
  CHECK(abortsInChild([] {
    ObjectTable* tp = nullptr;
    ObjectTable t(kEpoch, [&](const ObjectRecord&) { tp->create(1, 0, 1, 0); });
    tp = &t;
    auto a = t.create(1, 0, 1, 0);
    t.removeHolder(a.writer);
  }));
  CHECK(abortsInChild([] {
    ObjectTable* tp = nullptr;
    HolderId other = 0;
    ObjectTable t(kEpoch, [&](const ObjectRecord&) { tp->removeHolder(other); });
    tp = &t;
    auto a = t.create(1, 0, 1, 0);
    other = t.create(1, 0, 1, 0).writer;
    t.removeHolder(a.writer);
  }));
  CHECK(abortsInChild([] {
    ObjectTable t(kEpoch, nullptr);
    auto a = t.create(1, 0, 1, 0);
    t.forEach([&](const ObjectRecord&) { t.pin(a.id); });
  }));
  // Control: the same steps without re-entry do not abort.
  CHECK_FALSE(abortsInChild([] {
    ObjectTable t(kEpoch, [](const ObjectRecord&) {});
    auto a = t.create(1, 0, 1, 0);
    t.removeHolder(a.writer);
    t.create(1, 0, 1, 0);
  }));
}

TEST_CASE("the guard is released even if the callback throws") {
  bool shouldThrow = true;
  ObjectTable t(kEpoch, [&](const ObjectRecord&) {
    if (shouldThrow) throw std::runtime_error("callback failure");
  });
  auto a = t.create(1, 0, 1, 0);
  CHECK_THROWS_AS(t.removeHolder(a.writer), std::runtime_error);
  CHECK(t.find(a.id) == nullptr);  // the object was already out of the table
  shouldThrow = false;
  auto b = t.create(1, 0, 1, 0);  // would abort if the guard were stuck
  CHECK(t.removeHolder(b.writer));
  CHECK(t.size() == 0);
}
