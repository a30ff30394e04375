// Randomized model-based test of ObjectTable.
//
// Thousands of random operation sequences (fixed seeds, so every run is identical) are applied
// both to an ObjectTable and to a deliberately naive reference model built from plain maps and
// vectors, which recomputes everything from scratch. After every single table call the two must
// agree on: each call's result, which objects exist and all their fields, the stats, the next
// lease expiry, each object's holders, children, parents, alias target and resolution, and the
// names -- and the set of objects the reclaim callback reported during that call must be exactly
// the objects that just reached "no references and no pins", every container reported before
// the children it released.
//
// The model derives death by brute force: after every call it recomputes each object's
// references (holders + leases + names + one per listing by a container that is not dead + one
// per alias that is not dead) and marks dead whatever has none, repeating until nothing changes
// -- a fixpoint, where the table uses a worklist. Cycle refusals are checked against a plain
// reachability search over those same links.
//
// At the end of each sequence everything is dropped (clients disconnect, names are removed,
// leases expire) and every object ever created must have been reclaimed exactly once: since
// cycles are refused, reference counting alone must free every promise, alias and container.
//
// On failure the seed is printed together with a trace of the operations that led there.
// Reproduce one sequence with REFSTORE_GC_MODEL_SEED=<seed>; change the number of sequences with
// REFSTORE_GC_MODEL_SEQUENCES=<n>.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gc/object_id.h"
#include "gc/object_table.h"

using namespace refstore::gc;

namespace {

// Thrown on the first disagreement between table and model.
struct Mismatch {
  std::string what;
};

// ---- The reference model: plain containers, everything derived by brute force. ----

struct ModelObject {
  ObjectId id;
  uint64_t size = 0, userData = 0, hashHi = 0, hashLo = 0;
  MonoMillis createdAt = 0;
  ObjectState state = ObjectState::CREATING;
  std::map<HolderId, ClientId> holders;
  std::map<ClientId, uint32_t> pinsByClient;  // who pinned it (the table only counts pins)
  std::vector<size_t> children;               // as declared; ignored once this object is dead
  std::optional<size_t> aliasOf;              // fulfillWith target; ignored once dead
  bool dead = false;                          // sticky: set by Model::settle
  int reclaims = 0;                           // how often the table reported it reclaimed
};

struct ModelLease {
  size_t object;  // index into Model::objects
  LeaseId id;     // what the table returned
  Secret secret;
  MonoMillis expiresAt;
  uint32_t usesLeft;  // 0 = unlimited
};

struct Model {
  std::vector<ModelObject> objects;  // index i holds the object with id.lo == i + 1
  std::vector<ModelLease> leases;
  std::map<HolderId, size_t> holderObject;  // live holder -> object index
  std::map<std::string, size_t> names;      // name -> object index

  bool dead(size_t i) const { return objects[i].dead; }
  bool live(size_t i) const { return !dead(i); }
  uint32_t pins(size_t i) const {
    uint32_t n = 0;
    for (const auto& [client, count] : objects[i].pinsByClient) n += count;
    return n;
  }
  bool gone(size_t i) const { return dead(i) && pins(i) == 0; }

  // Links held by object j (only while j is not dead): its child listings and alias target.
  std::vector<size_t> links(size_t j) const {
    if (dead(j)) return {};
    std::vector<size_t> out = objects[j].children;
    if (objects[j].aliasOf) out.push_back(*objects[j].aliasOf);
    return out;
  }

  // Per-source counts for every object, recomputed from scratch.
  struct Counts {
    std::vector<uint32_t> leases, names, parents;
    std::vector<std::vector<size_t>> parentsOf;  // parent index per link, ascending
  };
  Counts counts() const {
    Counts c;
    size_t n = objects.size();
    c.leases.assign(n, 0);
    c.names.assign(n, 0);
    c.parents.assign(n, 0);
    c.parentsOf.assign(n, {});
    for (const auto& l : leases) ++c.leases[l.object];
    for (const auto& [name, i] : names) ++c.names[i];
    for (size_t j = 0; j < n; ++j) {
      for (size_t k : links(j)) {
        ++c.parents[k];
        c.parentsOf[k].push_back(j);
      }
    }
    return c;
  }
  uint64_t refs(const Counts& c, size_t i) const {
    return objects[i].holders.size() + c.leases[i] + c.names[i] + c.parents[i];
  }

  // Marks dead every object left without references, repeating until stable (a death can
  // remove its links from others). Returns the objects that died, in no particular order.
  std::vector<size_t> settle() {
    std::vector<size_t> died;
    for (bool changed = true; changed;) {
      changed = false;
      Counts c = counts();
      for (size_t i = 0; i < objects.size(); ++i) {
        if (!dead(i) && refs(c, i) == 0) {
          objects[i].dead = true;
          died.push_back(i);
          changed = true;
        }
      }
    }
    return died;
  }

  // Whether `target` is among `from` or reachable from them over live links.
  bool reaches(const std::vector<size_t>& from, size_t target) const {
    std::vector<size_t> stack = from;
    std::vector<bool> seen(objects.size());
    while (!stack.empty()) {
      size_t k = stack.back();
      stack.pop_back();
      if (k == target) return true;
      if (seen[k]) continue;
      seen[k] = true;
      for (size_t next : links(k)) stack.push_back(next);
    }
    return false;
  }

  std::optional<size_t> resolve(size_t i) const {
    size_t hops = 0;
    while (!dead(i) && objects[i].aliasOf) {
      i = *objects[i].aliasOf;
      if (++hops > objects.size()) return std::nullopt;  // a cycle: the table let one in
    }
    return i;
  }

  static bool ownsBytes(const ModelObject& o) {
    return !o.aliasOf && o.state != ObjectState::PROMISED && o.state != ObjectState::FAILED;
  }
};

// Counts of interesting events across all sequences, to prove the generator reaches them.
struct Coverage {
  uint64_t ops = 0, reclaims = 0, deadPinnedSeen = 0, redeemOk = 0, redeemExpired = 0,
           redeemNotFound = 0, lastUseRedeems = 0, leaseExpiries = 0, multiReclaimCalls = 0,
           refusedOnDead = 0;
  // Promises, containment, names.
  uint64_t promises = 0, fulfillOk = 0, fulfillWithChildren = 0, fulfillWithOk = 0,
           aliasOfPending = 0, aliasChainsResolved = 0, rejectOk = 0, settleRefused = 0,
           sealWithChildrenOk = 0, createWithChildrenOk = 0, invalidChildRefused = 0,
           cycleRefusedFulfill = 0, cycleRefusedAlias = 0, cycleRefusedSeal = 0,
           nameOk = 0, nameDuplicate = 0, nameNotFound = 0, removeNameOk = 0,
           removeNameNotFound = 0, cascadeDeaths = 0, deadPinnedContainers = 0,
           reclaimedUnsettled = 0, reclaimedFailed = 0, reclaimedAliases = 0;
};

class Runner {
 public:
  Runner(uint64_t seed, bool trace, Coverage* cov)
      : rng_(seed),
        epoch_(rng_()),
        table_(epoch_, [this](const ObjectRecord& r) { reclaimedNow_.push_back(r); }),
        trace_(trace),
        cov_(cov) {}

  void run() {
    const int numOps = 50 + int(rng_() % 151);  // 50..200
    numClients_ = 1 + rng_() % 4;
    for (int op = 0; op < numOps; ++op) {
      randomOp();
      ++cov_->ops;
      if (op % 16 == 15) verifyForEach();
    }
    dropEverything();
  }

  const std::deque<std::string>& log() const { return log_; }

 private:
  // ---- helpers ----

  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(int percent) { return below(100) < uint64_t(percent); }
  ClientId randomClient() { return 1 + below(numClients_); }

  void note(const std::string& s) {
    if (!trace_) return;
    log_.push_back(s);
    if (log_.size() > 40) log_.pop_front();
  }

  template <typename A, typename B>
  void expectEq(const A& actual, const B& expected, const char* what) {
    if (!(actual == expected)) {
      std::ostringstream os;
      os << what << ": table says " << actual << ", model says " << expected;
      throw Mismatch{os.str()};
    }
  }
  void expect(bool ok, const std::string& what) {
    if (!ok) throw Mismatch{what};
  }

  // An id to operate on: usually one the model knows (live or not), sometimes one never
  // issued, sometimes one from another daemon's epoch.
  ObjectId randomObjectId() {
    uint64_t r = below(100);
    if (r < 5 || m_.objects.empty()) return ObjectId{epoch_, m_.objects.size() + 1 + below(3)};
    if (r < 8) return ObjectId{epoch_ + 1 + below(3), 1 + below(m_.objects.size())};
    if (r < 70) {  // prefer objects still in the table
      std::vector<size_t> present;
      for (size_t i = 0; i < m_.objects.size(); ++i) {
        if (!m_.gone(i)) present.push_back(i);
      }
      if (!present.empty()) return m_.objects[present[below(present.size())]].id;
    }
    return m_.objects[below(m_.objects.size())].id;
  }
  // Model index for an id, or nullopt if the model never created it.
  std::optional<size_t> indexOf(ObjectId id) const {
    if (id.hi != epoch_ || id.lo == 0 || id.lo > m_.objects.size()) return std::nullopt;
    return size_t(id.lo - 1);
  }
  bool modelLive(ObjectId id) const {
    auto i = indexOf(id);
    return i && m_.live(*i);
  }
  void noteRefusedOnDead(ObjectId id) {
    auto i = indexOf(id);
    if (i && m_.dead(*i) && !m_.gone(*i)) ++cov_->refusedOnDead;
  }

  static constexpr int kNamePool = 6;  // few names, so DUPLICATE and reuse happen often
  static std::string poolName(int n) { return "name" + std::to_string(n); }

  // Live objects that contain `self` (reach it over live links): listing one of them as a
  // child, or aliasing one, would close a cycle.
  std::vector<size_t> containersOf(size_t self) const {
    std::vector<size_t> out;
    for (size_t j = 0; j < m_.objects.size(); ++j) {
      if (j != self && m_.live(j) && m_.reaches(m_.links(j), self)) out.push_back(j);
    }
    return out;
  }

  // An id to use as a child or alias target of `self` (if any): usually a random id (live or
  // not, sometimes invalid); sometimes deliberately `self` or one of its containers, so that
  // cycle refusals are exercised and not only hit by luck.
  ObjectId randomLinkTarget(std::optional<size_t> self) {
    if (self && chance(15)) {
      std::vector<size_t> cands = containersOf(*self);
      if (chance(25) || cands.empty()) return idOf(*self);
      return idOf(cands[below(cands.size())]);
    }
    if (chance(30)) {  // prefer promises and aliases: nesting before settling, alias chains
      std::vector<size_t> cands;
      for (size_t i = 0; i < m_.objects.size(); ++i) {
        if (m_.live(i) && (m_.objects[i].state == ObjectState::PROMISED || m_.objects[i].aliasOf))
          cands.push_back(i);
      }
      if (!cands.empty()) return idOf(cands[below(cands.size())]);
    }
    return randomObjectId();
  }

  // 0..3 children (a duplicate now and then); empty half the time.
  std::vector<ObjectId> randomChildren(std::optional<size_t> self) {
    std::vector<ObjectId> out;
    if (chance(50)) return out;
    size_t n = 1 + below(3);
    for (size_t k = 0; k < n; ++k) {
      if (!out.empty() && chance(15)) {
        out.push_back(out[below(out.size())]);
      } else {
        out.push_back(randomLinkTarget(self));
      }
    }
    return out;
  }

  // Model indexes of `children` if all are live, else nullopt (the table refuses the call).
  std::optional<std::vector<size_t>> liveChildren(const std::vector<ObjectId>& children) const {
    std::vector<size_t> out;
    for (ObjectId c : children) {
      auto i = indexOf(c);
      if (!i || !m_.live(*i)) return std::nullopt;
      out.push_back(*i);
    }
    return out;
  }

  static std::string idList(const std::vector<ObjectId>& ids) {
    std::string out = "{";
    for (ObjectId id : ids) out += " " + std::to_string(id.lo);
    return out + " }";
  }

  // Wraps one table call: the model's notion of "present" before, the table call plus the model
  // update (in `body`), then the reclaim check and a full comparison.
  template <typename Body>
  void step(Body body) {
    std::vector<bool> goneBefore(m_.objects.size());
    for (size_t i = 0; i < m_.objects.size(); ++i) goneBefore[i] = m_.gone(i);
    reclaimedNow_.clear();
    body();
    std::vector<size_t> died = m_.settle();
    noteDeaths(died);
    checkReclaims(goneBefore);
    verifyAll();
  }

  // Coverage only: deaths caused by a container or alias dying in the same call, and
  // containers dying while pinned (their children are released before their memory).
  void noteDeaths(const std::vector<size_t>& died) {
    std::set<size_t> now(died.begin(), died.end());
    for (size_t i : died) {
      const ModelObject& o = m_.objects[i];
      if ((!o.children.empty() || o.aliasOf) && m_.pins(i) > 0) ++cov_->deadPinnedContainers;
      for (size_t j : died) {
        const ModelObject& p = m_.objects[j];
        if (std::count(p.children.begin(), p.children.end(), i) > 0 || p.aliasOf == i) {
          ++cov_->cascadeDeaths;
          break;
        }
      }
    }
  }

  // The objects reclaimed during this call must be exactly those that became gone in the model,
  // and a container (or alias) reclaimed in the call must come before what it released.
  void checkReclaims(const std::vector<bool>& goneBefore) {
    std::vector<ObjectId> expected, actual;
    for (size_t i = 0; i < goneBefore.size(); ++i) {
      if (!goneBefore[i] && m_.gone(i)) expected.push_back(m_.objects[i].id);
    }
    std::map<size_t, size_t> position;  // object index -> position in this call's reports
    for (const ObjectRecord& r : reclaimedNow_) {
      actual.push_back(r.id);
      auto i = indexOf(r.id);
      expect(i.has_value(), "reclaimed an id the model never created: " + toHex(r.id));
      position[*i] = position.size();
      ModelObject& o = m_.objects[*i];
      ++o.reclaims;
      expectEq(o.reclaims, 1, "times reclaimed");
      expectEq(r.size, o.size, "reclaimed size");
      expectEq(r.userData, o.userData, "reclaimed userData");
      expectEq(int(r.state), int(o.state), "reclaimed state");
      expectEq(r.hashHi, o.hashHi, "reclaimed hashHi");
      expectEq(r.hashLo, o.hashLo, "reclaimed hashLo");
      expectEq(r.dead, true, "reclaimed record dead flag");
      expectEq(r.alias, o.aliasOf.has_value(), "reclaimed alias flag");
      expectEq(r.holders + r.leases + r.pins + r.names + r.parents, 0u, "reclaimed record counts");
      expectEq(ObjectTable::ownsBytes(r), Model::ownsBytes(o), "reclaimed ownsBytes");
      if (!ObjectTable::ownsBytes(r)) {
        expectEq(r.size + r.userData + r.hashHi + r.hashLo, 0u, "no-bytes record has bytes");
      }
      if (r.state == ObjectState::PROMISED) ++cov_->reclaimedUnsettled;
      if (r.state == ObjectState::FAILED) ++cov_->reclaimedFailed;
      if (r.alias) ++cov_->reclaimedAliases;
    }
    for (const auto& [j, pos] : position) {
      std::vector<size_t> released = m_.objects[j].children;
      if (m_.objects[j].aliasOf) released.push_back(*m_.objects[j].aliasOf);
      for (size_t k : released) {
        auto kp = position.find(k);
        expect(kp == position.end() || kp->second > pos,
               "object " + std::to_string(k + 1) + " reclaimed before its container " +
                   std::to_string(j + 1));
      }
    }
    std::sort(actual.begin(), actual.end());
    std::sort(expected.begin(), expected.end());
    if (actual != expected) {
      std::ostringstream os;
      os << "reclaimed {";
      for (auto id : actual) os << " " << id.lo;
      os << " } but model expected {";
      for (auto id : expected) os << " " << id.lo;
      os << " }";
      throw Mismatch{os.str()};
    }
    cov_->reclaims += actual.size();
    if (actual.size() > 1) ++cov_->multiReclaimCalls;
  }

  ObjectId idOf(size_t i) const { return m_.objects[i].id; }

  // Every object's record, holders, links and names, and all stats, recomputed from the model.
  void verifyAll() {
    const Model::Counts c = m_.counts();
    ObjectTable::Stats want{};
    for (size_t i = 0; i < m_.objects.size(); ++i) {
      const ModelObject& o = m_.objects[i];
      const ObjectRecord* r = table_.find(o.id);
      const std::string which = " of " + std::to_string(o.id.lo);
      if (m_.gone(i)) {
        expect(r == nullptr, "object " + std::to_string(o.id.lo) + " should be gone");
        expect(table_.resolveAlias(o.id) == o.id, "resolveAlias of a gone object");
        continue;
      }
      expect(r != nullptr, "object " + std::to_string(o.id.lo) + " missing (reclaimed early?)");
      expect(r->id == o.id, "record id");
      expectEq(r->size, o.size, "size");
      expectEq(r->userData, o.userData, "userData");
      expectEq(r->createdAt, o.createdAt, "createdAt");
      expectEq(int(r->state), int(o.state), "state");
      expectEq(r->hashHi, o.hashHi, "hashHi");
      expectEq(r->hashLo, o.hashLo, "hashLo");
      expectEq(r->holders, o.holders.size(), "holders");
      expectEq(r->leases, c.leases[i], "leases");
      expectEq(r->names, c.names[i], "names");
      expectEq(r->parents, c.parents[i], "parents");
      expectEq(r->pins, m_.pins(i), "pins");
      expectEq(r->dead, m_.dead(i), "dead");
      expectEq(r->alias, o.aliasOf.has_value(), "alias flag");
      expectEq(ObjectTable::refCount(*r), m_.refs(c, i), "refCount");

      auto hs = table_.holdersOf(o.id);
      std::sort(hs.begin(), hs.end());
      std::vector<std::pair<HolderId, ClientId>> wantHs(o.holders.begin(), o.holders.end());
      expect(hs == wantHs, "holdersOf" + which);

      std::vector<ObjectId> wantKids;
      if (m_.live(i)) {
        for (size_t k : o.children) wantKids.push_back(idOf(k));
      }
      expect(table_.childrenOf(o.id) == wantKids, "childrenOf" + which);
      std::vector<ObjectId> wantParents;
      for (size_t j : c.parentsOf[i]) wantParents.push_back(idOf(j));
      expect(table_.parentsOf(o.id) == wantParents, "parentsOf" + which);
      std::optional<ObjectId> wantTarget;
      if (m_.live(i) && o.aliasOf) wantTarget = idOf(*o.aliasOf);
      expect(table_.aliasTarget(o.id) == wantTarget, "aliasTarget" + which);
      std::optional<size_t> end = m_.resolve(i);
      expect(end.has_value(), "alias cycle in the model" + which);
      expect(table_.resolveAlias(o.id) == idOf(*end), "resolveAlias" + which);
      if (wantTarget && *end != *o.aliasOf) ++cov_->aliasChainsResolved;
      std::vector<std::string> wantNames;
      for (const auto& [name, k] : m_.names) {
        if (k == i) wantNames.push_back(name);
      }
      expect(table_.namesOf(o.id) == wantNames, "namesOf" + which);

      ++want.objects;
      ++want.perState[size_t(o.state)];
      if (m_.dead(i)) {
        ++want.deadPinned;
        ++cov_->deadPinnedSeen;
      } else {
        want.liveBytes += o.size;
      }
      want.holders += o.holders.size();
      want.parentRefs += c.parents[i];
    }
    want.leases = m_.leases.size();
    want.names = m_.names.size();

    ObjectTable::Stats s = table_.stats();
    expectEq(s.objects, want.objects, "stats.objects");
    expectEq(table_.size(), want.objects, "size()");
    expectEq(s.liveBytes, want.liveBytes, "stats.liveBytes");
    expectEq(s.deadPinned, want.deadPinned, "stats.deadPinned");
    expectEq(s.holders, want.holders, "stats.holders");
    expectEq(s.leases, want.leases, "stats.leases");
    expectEq(s.names, want.names, "stats.names");
    expectEq(s.parentRefs, want.parentRefs, "stats.parentRefs");
    for (size_t k = 0; k < kNumObjectStates; ++k) {
      expectEq(s.perState[k], want.perState[k], "stats.perState");
    }

    std::optional<MonoMillis> next;
    for (const auto& l : m_.leases) {
      if (!next || l.expiresAt < *next) next = l.expiresAt;
    }
    expect(table_.nextLeaseExpiry() == next, "nextLeaseExpiry");

    std::vector<std::pair<std::string, ObjectId>> wantList;
    for (const auto& [name, k] : m_.names) wantList.emplace_back(name, idOf(k));
    expect(table_.listNames() == wantList, "listNames");
    for (int n = 0; n < kNamePool; ++n) {
      std::string name = poolName(n);
      auto it = m_.names.find(name);
      std::optional<ObjectId> wantId;
      if (it != m_.names.end()) wantId = idOf(it->second);
      expect(table_.lookupName(name) == wantId, "lookupName " + name);
    }
  }

  void verifyForEach() {
    std::vector<ObjectId> seen;
    table_.forEach([&](const ObjectRecord& r) { seen.push_back(r.id); });
    std::sort(seen.begin(), seen.end());
    std::vector<ObjectId> want;
    for (size_t i = 0; i < m_.objects.size(); ++i) {
      if (!m_.gone(i)) want.push_back(m_.objects[i].id);
    }
    expect(seen == want, "forEach visited a different set of objects");
  }

  // ---- operations: each is one table call checked against the model ----

  void opCreate() {
    bool sealed = chance(40);
    uint64_t size = below(1 << 20), userData = rng_(), hashHi = rng_(), hashLo = rng_();
    ClientId client = randomClient();
    std::vector<ObjectId> children;
    if (sealed) children = randomChildren(std::nullopt);
    note(std::string(sealed ? "createSealed" : "create") + " client=" + std::to_string(client) +
         (children.empty() ? "" : " children=" + idList(children)));
    step([&] {
      auto kids = liveChildren(children);
      ObjectTable::Created c =
          sealed ? table_.createSealed(size, hashHi, hashLo, userData, client, now_, children)
                 : table_.create(size, userData, client, now_);
      if (!kids) {
        expect(c.id == ObjectId{} && c.writer == 0, "createSealed with an invalid child");
        ++cov_->invalidChildRefused;
        return;
      }
      expect(c.id == ObjectId{epoch_, m_.objects.size() + 1}, "create: unexpected id");
      checkNewHolder(c.writer);
      ModelObject o;
      o.id = c.id;
      o.size = size;
      o.userData = userData;
      o.createdAt = now_;
      o.state = sealed ? ObjectState::SEALED : ObjectState::CREATING;
      if (sealed) {
        o.hashHi = hashHi;
        o.hashLo = hashLo;
        o.children = *kids;
        if (!kids->empty()) ++cov_->createWithChildrenOk;
      }
      o.holders[c.writer] = client;
      m_.holderObject[c.writer] = m_.objects.size();
      m_.objects.push_back(o);
    });
  }

  void opCreatePromise() {
    ClientId client = randomClient();
    note("createPromise client=" + std::to_string(client));
    step([&] {
      ObjectTable::Created c = table_.createPromise(client, now_);
      expect(c.id == ObjectId{epoch_, m_.objects.size() + 1}, "createPromise: unexpected id");
      checkNewHolder(c.writer);
      ModelObject o;
      o.id = c.id;
      o.createdAt = now_;
      o.state = ObjectState::PROMISED;
      o.holders[c.writer] = client;
      m_.holderObject[c.writer] = m_.objects.size();
      m_.objects.push_back(o);
      ++cov_->promises;
    });
  }

  void checkNewHolder(HolderId h) {
    expect(h != 0, "holder id 0 for a successful call");
    expect(issuedHolders_.insert(h).second, "holder id reused: " + std::to_string(h));
  }

  void opSeal() {
    ObjectId id = randomObjectId();
    uint64_t hi = rng_(), lo = rng_();
    std::vector<ObjectId> children = randomChildren(indexOf(id));
    note("seal " + std::to_string(id.lo) + " children=" + idList(children));
    step([&] {
      auto i = indexOf(id);
      auto kids = liveChildren(children);
      bool eligible = i && m_.live(*i) && m_.objects[*i].state == ObjectState::CREATING;
      bool cycle = eligible && kids && m_.reaches(*kids, *i);
      bool want = eligible && kids && !cycle;
      expectEq(table_.seal(id, hi, lo, children), want, "seal result");
      if (eligible && !kids) ++cov_->invalidChildRefused;
      if (cycle) ++cov_->cycleRefusedSeal;
      if (want) {
        m_.objects[*i].state = ObjectState::SEALED;
        m_.objects[*i].hashHi = hi;
        m_.objects[*i].hashLo = lo;
        m_.objects[*i].children = *kids;
        if (!kids->empty()) ++cov_->sealWithChildrenOk;
      }
    });
  }

  // A promise to settle: usually a live PROMISED object, sometimes any id (to be refused).
  ObjectId randomPromiseId() {
    if (chance(80)) {
      std::vector<size_t> cands;
      for (size_t i = 0; i < m_.objects.size(); ++i) {
        if (m_.live(i) && m_.objects[i].state == ObjectState::PROMISED) cands.push_back(i);
      }
      if (!cands.empty()) return idOf(cands[below(cands.size())]);
    }
    return randomObjectId();
  }

  bool settleable(std::optional<size_t> i) const {
    return i && m_.live(*i) && m_.objects[*i].state == ObjectState::PROMISED;
  }

  void opFulfill() {
    ObjectId id = randomPromiseId();
    uint64_t size = below(1 << 16), userData = rng_(), hi = rng_(), lo = rng_();
    std::vector<ObjectId> children = randomChildren(indexOf(id));
    note("fulfill " + std::to_string(id.lo) + " children=" + idList(children));
    noteRefusedOnDead(id);
    step([&] {
      auto i = indexOf(id);
      auto kids = liveChildren(children);
      bool eligible = settleable(i);
      bool cycle = eligible && kids && m_.reaches(*kids, *i);
      bool want = eligible && kids && !cycle;
      expectEq(table_.fulfill(id, size, userData, hi, lo, children), want, "fulfill result");
      if (!eligible) ++cov_->settleRefused;
      if (eligible && !kids) ++cov_->invalidChildRefused;
      if (cycle) ++cov_->cycleRefusedFulfill;
      if (!want) return;
      ModelObject& o = m_.objects[*i];
      o.state = ObjectState::SEALED;
      o.size = size;
      o.userData = userData;
      o.hashHi = hi;
      o.hashLo = lo;
      o.children = *kids;
      ++cov_->fulfillOk;
      if (!kids->empty()) ++cov_->fulfillWithChildren;
    });
  }

  void opFulfillWith() {
    ObjectId id = randomPromiseId();
    ObjectId target = randomLinkTarget(indexOf(id));
    note("fulfillWith " + std::to_string(id.lo) + " target=" + std::to_string(target.lo) +
         (target.hi == epoch_ ? "" : " (foreign)"));
    noteRefusedOnDead(id);
    step([&] {
      auto i = indexOf(id);
      auto t = indexOf(target);
      bool eligible = settleable(i);
      bool targetLive = t && m_.live(*t);
      bool cycle = eligible && targetLive && m_.reaches({*t}, *i);
      bool want = eligible && targetLive && !cycle;
      expectEq(table_.fulfillWith(id, target), want, "fulfillWith result");
      if (!eligible) ++cov_->settleRefused;
      if (eligible && !targetLive) ++cov_->invalidChildRefused;
      if (cycle) ++cov_->cycleRefusedAlias;
      if (!want) return;
      if (m_.objects[*t].state == ObjectState::PROMISED) ++cov_->aliasOfPending;
      ModelObject& o = m_.objects[*i];
      o.state = ObjectState::SEALED;
      o.aliasOf = *t;
      ++cov_->fulfillWithOk;
    });
  }

  void opReject() {
    ObjectId id = randomPromiseId();
    note("reject " + std::to_string(id.lo));
    noteRefusedOnDead(id);
    step([&] {
      auto i = indexOf(id);
      bool want = settleable(i);
      expectEq(table_.reject(id), want, "reject result");
      if (!want) {
        ++cov_->settleRefused;
        return;
      }
      m_.objects[*i].state = ObjectState::FAILED;
      ++cov_->rejectOk;
    });
  }

  void opAddName() {
    ObjectId id = randomObjectId();
    std::string name = poolName(int(below(kNamePool)));
    note("addName " + std::to_string(id.lo) + " " + name);
    noteRefusedOnDead(id);
    step([&] {
      auto i = indexOf(id);
      NameResult want = !(i && m_.live(*i))       ? NameResult::NOT_FOUND
                        : m_.names.count(name) > 0 ? NameResult::DUPLICATE
                                                   : NameResult::OK;
      expectEq(int(table_.addName(id, name)), int(want), "addName result");
      if (want == NameResult::OK) {
        m_.names[name] = *i;
        ++cov_->nameOk;
      } else if (want == NameResult::DUPLICATE) {
        ++cov_->nameDuplicate;
      } else {
        ++cov_->nameNotFound;
      }
    });
  }

  void removeNameStep(const std::string& name) {
    note("removeName " + name);
    step([&] {
      auto it = m_.names.find(name);
      NameResult want = it == m_.names.end() ? NameResult::NOT_FOUND : NameResult::OK;
      expectEq(int(table_.removeName(name)), int(want), "removeName result");
      if (want == NameResult::OK) {
        m_.names.erase(it);
        ++cov_->removeNameOk;
      } else {
        ++cov_->removeNameNotFound;
      }
    });
  }

  void opRemoveName() {
    if (!m_.names.empty() && chance(80)) {
      auto it = m_.names.begin();
      std::advance(it, below(m_.names.size()));
      removeNameStep(it->first);
    } else {
      removeNameStep(poolName(int(below(kNamePool))));
    }
  }

  void opAddHolder() {
    ObjectId id = randomObjectId();
    ClientId client = randomClient();
    note("addHolder " + std::to_string(id.lo) + " client=" + std::to_string(client));
    noteRefusedOnDead(id);
    step([&] {
      HolderId h = table_.addHolder(id, client, 0);
      if (!modelLive(id)) {
        expectEq(h, 0u, "addHolder on a non-live object");
        return;
      }
      checkNewHolder(h);
      size_t i = *indexOf(id);
      m_.objects[i].holders[h] = client;
      m_.holderObject[h] = i;
    });
  }

  void removeHolderStep(HolderId h) {
    note("removeHolder " + std::to_string(h));
    step([&] {
      auto it = m_.holderObject.find(h);
      bool want = it != m_.holderObject.end();
      expectEq(table_.removeHolder(h), want, "removeHolder result");
      if (want) {
        m_.objects[it->second].holders.erase(h);
        m_.holderObject.erase(it);
      }
    });
  }

  void opRemoveHolder() {
    uint64_t r = below(100);
    HolderId h;
    if (r < 75 && !m_.holderObject.empty()) {
      auto it = m_.holderObject.begin();
      std::advance(it, below(m_.holderObject.size()));
      h = it->first;
    } else if (r < 90 && !issuedHolders_.empty()) {
      auto it = issuedHolders_.begin();  // possibly already removed: double remove
      std::advance(it, below(issuedHolders_.size()));
      h = *it;
    } else {
      h = chance(50) ? 0 : (issuedHolders_.empty() ? 1 : *issuedHolders_.rbegin()) + 1 + below(5);
    }
    removeHolderStep(h);
  }

  void opAddLease() {
    ObjectId id = randomObjectId();
    Secret secret{++secretCounter_, rng_()};  // unique per lease
    MonoMillis expiresAt = now_ + below(500);
    uint32_t uses = uint32_t(below(4));
    note("addLease " + std::to_string(id.lo) + " expires=" + std::to_string(expiresAt) +
         " uses=" + std::to_string(uses));
    noteRefusedOnDead(id);
    step([&] {
      bool want = modelLive(id);
      LeaseId lease = table_.addLease(id, secret, expiresAt, uses);
      expectEq(lease != 0, want, "addLease result");
      for (const auto& l : m_.leases) expect(l.id != lease, "lease ids are never reused");
      if (want) m_.leases.push_back(ModelLease{*indexOf(id), lease, secret, expiresAt, uses});
      if (lease != 0) spentLeases_.push_back(lease);
    });
  }

  void opRedeem() {
    ObjectId id;
    Secret secret;
    LeaseId leaseId = 0;
    uint64_t r = below(100);
    if (r < 65 && !m_.leases.empty()) {  // a real token
      const ModelLease& l = m_.leases[below(m_.leases.size())];
      id = m_.objects[l.object].id;
      secret = l.secret;
      leaseId = l.id;
    } else if (r < 75 && !m_.leases.empty()) {  // a real lease and secret for another object
      const ModelLease& l = m_.leases[below(m_.leases.size())];
      secret = l.secret;
      leaseId = l.id;
      id = randomObjectId();
    } else if (r < 85 && !m_.leases.empty()) {  // a real lease with another lease's secret
      leaseId = m_.leases[below(m_.leases.size())].id;
      const ModelLease& other = m_.leases[below(m_.leases.size())];
      secret = other.secret;
      id = m_.objects[other.object].id;
    } else if (r < 92 && !spentLeases_.empty()) {  // a lease id that may be used up or expired
      leaseId = spentLeases_[below(spentLeases_.size())];
      id = randomObjectId();
      secret = Secret{rng_(), rng_()};
      for (const auto& l : m_.leases) {
        if (l.id == leaseId) secret = l.secret;  // still live: its own secret
      }
    } else {  // a guessed lease and secret
      id = randomObjectId();
      secret = Secret{rng_(), rng_()};
      leaseId = rng_();
    }
    if (chance(40)) now_ += below(100);
    ClientId client = randomClient();
    note("redeem " + std::to_string(id.lo) + " secret#" + std::to_string(secret.hi) +
         " now=" + std::to_string(now_));
    step([&] {
      HolderId h = 12345;
      RedeemResult got = table_.redeemLease(leaseId, id, secret, now_, client, &h);
      auto i = indexOf(id);
      std::optional<size_t> match;
      for (size_t k = 0; k < m_.leases.size() && i; ++k) {
        if (m_.leases[k].id == leaseId && m_.leases[k].object == *i &&
            m_.leases[k].secret.hi == secret.hi && m_.leases[k].secret.lo == secret.lo) {
          match = k;
        }
      }
      if (!i || !m_.live(*i) || !match) {
        expectEq(int(got), int(RedeemResult::NOT_FOUND), "redeem result");
        expectEq(h, 0u, "redeem holder on failure");
        ++cov_->redeemNotFound;
        return;
      }
      ModelLease& l = m_.leases[*match];
      if (l.expiresAt <= now_) {
        expectEq(int(got), int(RedeemResult::EXPIRED), "redeem result");
        expectEq(h, 0u, "redeem holder on failure");
        m_.leases.erase(m_.leases.begin() + *match);
        ++cov_->redeemExpired;
        return;
      }
      expectEq(int(got), int(RedeemResult::OK), "redeem result");
      checkNewHolder(h);
      m_.objects[*i].holders[h] = client;
      m_.holderObject[h] = *i;
      if (l.usesLeft != 0 && --l.usesLeft == 0) {
        m_.leases.erase(m_.leases.begin() + *match);
        ++cov_->lastUseRedeems;
      }
      ++cov_->redeemOk;
    });
  }

  void expireStep(MonoMillis now) {
    note("expireLeases now=" + std::to_string(now));
    step([&] {
      size_t got = table_.expireLeases(now);
      size_t want = 0;
      for (size_t k = 0; k < m_.leases.size();) {
        if (m_.leases[k].expiresAt <= now) {
          m_.leases.erase(m_.leases.begin() + k);
          ++want;
        } else {
          ++k;
        }
      }
      expectEq(got, want, "expireLeases count");
      cov_->leaseExpiries += got;
    });
  }

  void opExpire() {
    now_ += below(200);
    expireStep(now_);
  }

  void opPin() {
    ObjectId id = randomObjectId();
    ClientId client = randomClient();
    note("pin " + std::to_string(id.lo) + " client=" + std::to_string(client));
    noteRefusedOnDead(id);
    step([&] {
      bool want = modelLive(id);
      expectEq(table_.pin(id), want, "pin result");
      if (want) ++m_.objects[*indexOf(id)].pinsByClient[client];
    });
  }

  void unpinStep(ObjectId id, std::optional<ClientId> owner) {
    note("unpin " + std::to_string(id.lo));
    step([&] {
      auto i = indexOf(id);
      bool want = i && m_.pins(*i) > 0;
      expectEq(table_.unpin(id), want, "unpin result");
      if (!want) return;
      auto& byClient = m_.objects[*i].pinsByClient;
      auto it = owner ? byClient.find(*owner) : byClient.begin();
      if (--it->second == 0) byClient.erase(it);
    });
  }

  void opUnpin() {
    std::vector<std::pair<size_t, ClientId>> pinned;
    for (size_t i = 0; i < m_.objects.size(); ++i) {
      for (const auto& [client, n] : m_.objects[i].pinsByClient) pinned.emplace_back(i, client);
    }
    if (!pinned.empty() && chance(80)) {
      auto [i, client] = pinned[below(pinned.size())];
      unpinStep(m_.objects[i].id, client);
    } else {
      unpinStep(randomObjectId(), std::nullopt);  // may or may not be pinned
    }
  }

  // A client disconnects: every holder and pin it has goes away, one table call at a time.
  void disconnect(ClientId client) {
    note("disconnect client=" + std::to_string(client));
    std::vector<HolderId> hs;
    for (const auto& [h, i] : m_.holderObject) {
      if (m_.objects[i].holders.at(h) == client) hs.push_back(h);
    }
    std::shuffle(hs.begin(), hs.end(), rng_);
    for (HolderId h : hs) removeHolderStep(h);
    for (size_t i = 0; i < m_.objects.size(); ++i) {
      auto it = m_.objects[i].pinsByClient.find(client);
      uint32_t n = it == m_.objects[i].pinsByClient.end() ? 0 : it->second;
      for (uint32_t k = 0; k < n; ++k) unpinStep(m_.objects[i].id, client);
    }
  }

  void randomOp() {
    uint64_t r = below(100);
    if (r < 10) return opCreate();
    if (r < 16) return opCreatePromise();
    if (r < 21) return opSeal();
    if (r < 26) return opFulfill();
    if (r < 30) return opFulfillWith();
    if (r < 32) return opReject();
    if (r < 36) return opAddName();
    if (r < 39) return opRemoveName();
    if (r < 48) return opAddHolder();
    if (r < 59) return opRemoveHolder();
    if (r < 64) return opAddLease();
    if (r < 70) return opRedeem();
    if (r < 75) return opExpire();
    if (r < 82) return opPin();
    if (r < 90) return opUnpin();
    if (r < 96) {
      now_ += below(100);  // just time passing
      note("tick now=" + std::to_string(now_));
      return;
    }
    disconnect(randomClient());
  }

  // Drop every reference and pin; afterwards nothing may remain and every object created must
  // have been reclaimed exactly once.
  void dropEverything() {
    note("drop everything");
    for (ClientId c = 1; c <= numClients_; ++c) disconnect(c);
    std::vector<std::string> names;
    for (const auto& [name, i] : m_.names) names.push_back(name);
    std::shuffle(names.begin(), names.end(), rng_);
    for (const std::string& name : names) removeNameStep(name);
    expireStep(std::numeric_limits<MonoMillis>::max());
    verifyForEach();
    expectEq(table_.size(), 0u, "objects left at the end");
    ObjectTable::Stats s = table_.stats();
    expectEq(s.objects + s.liveBytes + s.deadPinned + s.holders + s.leases + s.names +
                 s.parentRefs,
             0u, "stats at the end");
    expect(table_.listNames().empty(), "names left at the end");
    expect(!table_.nextLeaseExpiry().has_value(), "leases left at the end");
    for (const ModelObject& o : m_.objects) {
      expectEq(o.reclaims, 1, ("reclaims of object " + std::to_string(o.id.lo)).c_str());
    }
  }

  std::mt19937_64 rng_;
  const uint64_t epoch_;
  Model m_;
  std::vector<ObjectRecord> reclaimedNow_;
  ObjectTable table_;
  std::set<HolderId> issuedHolders_;
  uint64_t secretCounter_ = 0;
  std::vector<LeaseId> spentLeases_;  // every lease id the table ever returned
  MonoMillis now_ = 1000;
  uint64_t numClients_ = 1;
  bool trace_;
  std::deque<std::string> log_;
  Coverage* cov_;
};

// Runs one sequence; returns "" on success, else the mismatch plus a trace of the last ops.
std::string runSeed(uint64_t seed, Coverage* cov) {
  try {
    Runner(seed, false, cov).run();
    return "";
  } catch (const Mismatch& first) {
    // Deterministic: replay with tracing to show how we got there.
    Coverage scratch;
    Runner traced(seed, true, &scratch);
    try {
      traced.run();
    } catch (const Mismatch&) {
    }
    std::ostringstream os;
    os << "seed " << seed << ": " << first.what << "\nlast operations:\n";
    for (const auto& line : traced.log()) os << "  " << line << "\n";
    return os.str();
  }
}

uint64_t envOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

}  // namespace

TEST_CASE("ObjectTable agrees with the reference model on random operation sequences") {
  constexpr uint64_t kBaseSeed = 0x5eed0000;
  Coverage cov;
  std::vector<uint64_t> seeds;
  if (std::getenv("REFSTORE_GC_MODEL_SEED")) {
    seeds.push_back(envOr("REFSTORE_GC_MODEL_SEED", 0));
  } else {
    uint64_t n = envOr("REFSTORE_GC_MODEL_SEQUENCES", 5000);
    for (uint64_t i = 0; i < n; ++i) seeds.push_back(kBaseSeed + i);
  }
  int failures = 0;
  for (uint64_t seed : seeds) {
    std::string err = runSeed(seed, &cov);
    if (!err.empty()) {
      FAIL_CHECK(err);
      if (++failures >= 3) break;  // enough to debug; keep the log readable
    }
  }
  CHECK(failures == 0);
  MESSAGE("sequences=" << seeds.size() << " ops=" << cov.ops << " reclaims=" << cov.reclaims
                       << " deadPinnedObservations=" << cov.deadPinnedSeen
                       << " redeemOk=" << cov.redeemOk << " redeemExpired=" << cov.redeemExpired
                       << " redeemNotFound=" << cov.redeemNotFound
                       << " lastUseRedeems=" << cov.lastUseRedeems
                       << " leaseExpiries=" << cov.leaseExpiries
                       << " multiReclaimCalls=" << cov.multiReclaimCalls
                       << " refusedOnDead=" << cov.refusedOnDead);
  MESSAGE("promises=" << cov.promises << " fulfillOk=" << cov.fulfillOk
                      << " fulfillWithChildren=" << cov.fulfillWithChildren
                      << " fulfillWithOk=" << cov.fulfillWithOk
                      << " aliasOfPending=" << cov.aliasOfPending
                      << " aliasChainsResolved=" << cov.aliasChainsResolved
                      << " rejectOk=" << cov.rejectOk << " settleRefused=" << cov.settleRefused
                      << " sealWithChildrenOk=" << cov.sealWithChildrenOk
                      << " createWithChildrenOk=" << cov.createWithChildrenOk
                      << " invalidChildRefused=" << cov.invalidChildRefused
                      << " cycleRefused(fulfill/alias/seal)=" << cov.cycleRefusedFulfill << "/"
                      << cov.cycleRefusedAlias << "/" << cov.cycleRefusedSeal);
  MESSAGE("nameOk=" << cov.nameOk << " nameDuplicate=" << cov.nameDuplicate
                    << " nameNotFound=" << cov.nameNotFound << " removeNameOk=" << cov.removeNameOk
                    << " removeNameNotFound=" << cov.removeNameNotFound
                    << " cascadeDeaths=" << cov.cascadeDeaths
                    << " deadPinnedContainers=" << cov.deadPinnedContainers
                    << " reclaimed(unsettled/failed/alias)=" << cov.reclaimedUnsettled << "/"
                    << cov.reclaimedFailed << "/" << cov.reclaimedAliases);
  // The generator must actually reach every interesting path, or passing means little.
  if (seeds.size() >= 100) {
    CHECK(cov.reclaims > 0);
    CHECK(cov.deadPinnedSeen > 0);
    CHECK(cov.redeemOk > 0);
    CHECK(cov.redeemExpired > 0);
    CHECK(cov.redeemNotFound > 0);
    CHECK(cov.lastUseRedeems > 0);
    CHECK(cov.leaseExpiries > 0);
    CHECK(cov.multiReclaimCalls > 0);
    CHECK(cov.refusedOnDead > 0);
    CHECK(cov.promises > 0);
    CHECK(cov.fulfillOk > 0);
    CHECK(cov.fulfillWithChildren > 0);
    CHECK(cov.fulfillWithOk > 0);
    CHECK(cov.aliasOfPending > 0);
    CHECK(cov.aliasChainsResolved > 0);
    CHECK(cov.rejectOk > 0);
    CHECK(cov.settleRefused > 0);
    CHECK(cov.sealWithChildrenOk > 0);
    CHECK(cov.createWithChildrenOk > 0);
    CHECK(cov.invalidChildRefused > 0);
    CHECK(cov.cycleRefusedFulfill > 0);
    CHECK(cov.cycleRefusedAlias > 0);
    CHECK(cov.cycleRefusedSeal > 0);
    CHECK(cov.nameOk > 0);
    CHECK(cov.nameDuplicate > 0);
    CHECK(cov.nameNotFound > 0);
    CHECK(cov.removeNameOk > 0);
    CHECK(cov.removeNameNotFound > 0);
    CHECK(cov.cascadeDeaths > 0);
    CHECK(cov.deadPinnedContainers > 0);
    CHECK(cov.reclaimedUnsettled > 0);
    CHECK(cov.reclaimedFailed > 0);
    CHECK(cov.reclaimedAliases > 0);
  }
}
