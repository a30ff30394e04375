// Exception safety of ObjectTable's many-hosts mutators: every heap allocation they make is made
// to fail in turn (std::bad_alloc from a replaced global operator new), and each time the table
// must be exactly as it was before the call, and still work afterwards.
//
// The reclaim callback here does not allocate: an exception from the callback is a different
// contract (the mutation completes, then the exception propagates; see object_table.h).

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdlib>
#include <functional>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "gc/object_id.h"
#include "gc/object_table.h"

namespace {
// Allocations left before the one that fails; negative: none fails.
long allocationsBeforeFailure = -1;
}  // namespace

void* operator new(std::size_t size) {
  if (allocationsBeforeFailure == 0) {
    allocationsBeforeFailure = -1;  // one failure per arming: rollback paths may allocate
    throw std::bad_alloc();
  }
  if (allocationsBeforeFailure > 0) --allocationsBeforeFailure;
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace refstore::gc;

namespace {

constexpr uint64_t kEpoch = 0x0123456789abcdefULL;
constexpr uint64_t kOwner = 0xfeedfacecafebeefULL;

// A scenario: a table in some state, the ids and holders worth describing, and the call under
// test.
struct Scenario {
  size_t reclaims = 0;
  ObjectTable table{kEpoch, [this](const ObjectRecord&) { ++reclaims; }};
  std::vector<ObjectId> ids;
  std::vector<HolderId> holders;
};

// Everything observable about the scenario's objects and holders, as text.
std::string describe(const Scenario& s) {
  std::ostringstream out;
  const ObjectTable& t = s.table;
  auto st = t.stats();
  out << "objects=" << st.objects << " liveBytes=" << st.liveBytes << " dead=" << st.deadPinned
      << " holders=" << st.holders << " leases=" << st.leases << " names=" << st.names
      << " parents=" << st.parentRefs << " proxies=" << st.proxies
      << " proxyBytes=" << st.proxyBytes << " remote=" << st.remoteHolders
      << " detached=" << st.detachedHolders << " reclaims=" << s.reclaims << "\n";
  for (size_t k = 0; k < kNumObjectStates; ++k) out << st.perState[k] << " ";
  out << "next=" << t.nextDetachedExpiry().value_or(0) << "\n";
  for (ObjectId id : s.ids) {
    out << toHex(id) << ": ";
    const ObjectRecord* r = t.find(id);
    if (r == nullptr) {
      out << "gone\n";
      continue;
    }
    out << stateName(r->state) << " size=" << r->size << " ud=" << r->userData
        << " holders=" << r->holders << " names=" << r->names << " parents=" << r->parents
        << " pins=" << r->pins << " dead=" << r->dead << " alias=" << r->alias
        << " local=" << r->bytesLocal << " kids=" << t.childrenOf(id).size()
        << " parentsOf=" << t.parentsOf(id).size() << " names=" << t.namesOf(id).size()
        << " resolves=" << toHex(t.resolveAlias(id)) << " held:";
    for (auto [h, c] : t.holdersOf(id)) out << " " << h << "/" << c;
    out << "\n";
  }
  for (HolderId h : s.holders) {
    out << h << ": peer=" << t.remotePeerOf(h).value_or(0) << " detached=" << t.isDetached(h)
        << " known=" << t.holderInfo(h).has_value() << "\n";
  }
  for (auto& [name, id] : t.listNames()) out << name << "=" << toHex(id) << "\n";
  return out.str();
}

// Runs `call` on a fresh scenario from `setup` with its n-th allocation failing, for n = 0, 1,
// ... until a call needs fewer allocations than that and succeeds. Every failed call must leave
// the description unchanged; the successful one must satisfy `check`. Returns how many
// allocations the call could fail at.
size_t failEachAllocation(const std::function<void(Scenario&)>& setup,
                          const std::function<void(Scenario&)>& call,
                          const std::function<void(Scenario&)>& check) {
  for (long n = 0; n < 1000; ++n) {
    Scenario s;
    setup(s);
    const std::string before = describe(s);
    bool threw = false;
    allocationsBeforeFailure = n;
    try {
      call(s);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    allocationsBeforeFailure = -1;
    if (!threw) {
      check(s);
      return static_cast<size_t>(n);
    }
    INFO("allocation #" << n << " failed");
    CHECK(describe(s) == before);
    // Still works: the same call now succeeds.
    call(s);
    check(s);
  }
  FAIL("the call never succeeded");
  return 0;
}

}  // namespace

TEST_CASE("createProxy: a failed allocation adds nothing") {
  ObjectId id{kOwner, 1};
  size_t points = failEachAllocation(
      [&](Scenario& s) {
        s.ids = {id, ObjectId{kEpoch, 1}};
      },
      [&](Scenario& s) { s.table.createProxy(id, 1, 0); },
      [&](Scenario& s) {
        CHECK(s.table.find(id) != nullptr);
        CHECK(s.table.stats().proxies == 1);
      });
  CHECK(points >= 2);  // the slab's chunk, the id map's node or buckets
}

TEST_CASE("markRemote: a failed allocation leaves the holder local") {
  size_t points = failEachAllocation(
      [](Scenario& s) {
        auto a = s.table.createSealed(1, 0, 0, 0, 1, 0);
        s.ids = {a.id};
        s.holders = {s.table.addHolder(a.id, 2, 0)};
      },
      [](Scenario& s) { s.table.markRemote(s.holders[0], kOwner); },
      [](Scenario& s) { CHECK(s.table.remotePeerOf(s.holders[0]) == PeerId{kOwner}); });
  CHECK(points >= 2);  // the holder map and the per-peer set
}

TEST_CASE("detachPeer: a failed allocation detaches nothing") {
  size_t points = failEachAllocation(
      [](Scenario& s) {
        for (int i = 0; i < 3; ++i) {
          auto a = s.table.createSealed(1, 0, 0, 0, 1, 0);
          s.ids.push_back(a.id);
          s.holders.push_back(s.table.addHolder(a.id, 2, 0));
          REQUIRE(s.table.markRemote(s.holders.back(), kOwner));
        }
        // Another peer's detached holder: its deadline must stay too.
        s.holders.push_back(s.table.addHolder(s.ids[0], 3, 0));
        REQUIRE(s.table.markRemote(s.holders.back(), kOwner + 1));
        REQUIRE(s.table.detachPeer(kOwner + 1, 50) == 1);
      },
      [](Scenario& s) { s.table.detachPeer(kOwner, 100); },
      [](Scenario& s) {
        CHECK(s.table.stats().detachedHolders == 4);
        CHECK(s.table.nextDetachedExpiry() == MonoMillis{50});
      });
  CHECK(points >= 3);  // one deadline entry per holder
}

TEST_CASE("dropPeer, expireDetached and reattach: failed allocations change nothing") {
  auto setup = [](Scenario& s) {
    for (int i = 0; i < 3; ++i) {
      auto a = s.table.createSealed(1, 0, 0, 0, 1, 0);
      auto p = s.table.createProxy(ObjectId{kOwner, uint64_t(i + 1)}, 1, 0);
      s.ids.push_back(a.id);
      s.ids.push_back(p.id);
      for (ObjectId id : {a.id, p.id}) {
        s.holders.push_back(s.table.addHolder(id, 2, 0));
        REQUIRE(s.table.markRemote(s.holders.back(), kOwner));
      }
      REQUIRE(s.table.removeHolder(a.writer));
      REQUIRE(s.table.removeHolder(p.writer));
    }
    REQUIRE(s.table.detachPeer(kOwner, 100) == 6);
  };
  size_t points = failEachAllocation(setup, [](Scenario& s) { s.table.dropPeer(kOwner); },
                                     [](Scenario& s) {
                                       CHECK(s.table.size() == 0);
                                       CHECK(s.reclaims == 6);
                                     });
  CHECK(points >= 1);  // the list of holders to remove
  failEachAllocation(setup, [](Scenario& s) { s.table.expireDetached(100); },
                     [](Scenario& s) { CHECK(s.table.size() == 0); });
  failEachAllocation(setup, [](Scenario& s) { s.table.reattach(kOwner, s.ids[1], 9); },
                     [](Scenario& s) { CHECK(s.table.stats().detachedHolders == 5); });
}

TEST_CASE("proxies as names, children, alias targets and holders: failed allocations") {
  auto setup = [](Scenario& s) {
    s.table.create(1, 0, 1, 0);
    auto p = s.table.createProxy(ObjectId{kOwner, 1}, 1, 0);
    auto q = s.table.createPromise(1, 0);
    s.ids = {ObjectId{kEpoch, 1}, p.id, q.id};
  };
  failEachAllocation(setup, [](Scenario& s) { s.table.addName(s.ids[1], "remote"); },
                     [](Scenario& s) { CHECK(s.table.lookupName("remote") == s.ids[1]); });
  failEachAllocation(setup, [](Scenario& s) { s.table.addHolder(s.ids[1], 5, 0); },
                     [](Scenario& s) { CHECK(s.table.find(s.ids[1])->holders == 2); });
  failEachAllocation(setup, [](Scenario& s) { s.table.fulfillWith(s.ids[2], s.ids[1]); },
                     [](Scenario& s) { CHECK(s.table.resolveAlias(s.ids[2]) == s.ids[1]); });
  failEachAllocation(
      setup,
      [](Scenario& s) {
        s.table.createSealed(1, 0, 0, 0, 1, 0, {s.ids[1], s.ids[0], s.ids[1]});
      },
      [](Scenario& s) { CHECK(s.table.find(s.ids[1])->parents == 2); });
}
