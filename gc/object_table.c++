#include "gc/object_table.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace refstore::gc {

// One record per object at up to millions of objects: keep it from growing by accident.
static_assert(sizeof(ObjectRecord) <= 72, "ObjectRecord grew; check field order and padding");
static_assert(static_cast<size_t>(ObjectState::REMOTE) + 1 == kNumObjectStates,
              "kNumObjectStates must match ObjectState");

namespace {
size_t stateIndex(ObjectState s) { return static_cast<size_t>(s); }
}  // namespace

const char* stateName(ObjectState state) {
  switch (state) {
    case ObjectState::CREATING: return "creating";
    case ObjectState::SEALED: return "sealed";
    case ObjectState::PROMISED: return "promised";
    case ObjectState::FAILED: return "failed";
    case ObjectState::SPILLED: return "spilled";
    case ObjectState::REMOTE: return "remote";
  }
  return "unknown";
}

class ObjectTable::BusyScope {
 public:
  // Restores the previous value rather than clearing it, so scopes nest (a forEach inside a
  // reclaim callback, or inside another forEach, is a legal read).
  explicit BusyScope(bool& flag) : flag_(flag), saved_(flag) { flag_ = true; }
  ~BusyScope() { flag_ = saved_; }
  BusyScope(const BusyScope&) = delete;
  BusyScope& operator=(const BusyScope&) = delete;

 private:
  bool& flag_;
  const bool saved_;
};

ObjectTable::ObjectTable(uint64_t originEpoch, ReclaimCallback onReclaim)
    : epoch_(originEpoch), onReclaim_(std::move(onReclaim)) {}

void ObjectTable::checkNotBusy() const {
  // Always on (not assert): mutating while a reclaim callback or forEach is running would
  // corrupt iterators mid-use, and the check is one predictable branch.
  if (busy_) {
    std::fprintf(stderr,
                 "refstore::gc::ObjectTable mutated from inside its reclaim callback or a "
                 "forEach visitor\n");
    std::abort();
  }
}

ObjectTable::SlotMap::iterator ObjectTable::lookup(ObjectId id) {
  if (id.hi != epoch_) return objects_.end();
  return objects_.find(id.lo);
}

ObjectTable::SlotMap::const_iterator ObjectTable::lookup(ObjectId id) const {
  if (id.hi != epoch_) return objects_.end();
  return objects_.find(id.lo);
}

ObjectTable::Created ObjectTable::insert(ObjectRecord rec, ClientId creator) {
  rec.id = ObjectId{epoch_, nextObjectLo_};
  // Insert first: if allocation throws, no counter has moved and the id is simply not used.
  auto it = objects_.emplace(rec.id.lo, Slot{rec, 0}).first;
  ++nextObjectLo_;
  HolderId writer;
  try {
    writer = linkHolder(it, creator);
  } catch (...) {
    objects_.erase(it);
    throw;
  }
  liveBytes_ += rec.size;
  ++perState_[stateIndex(rec.state)];
  return Created{rec.id, writer};
}

ObjectTable::Created ObjectTable::create(uint64_t size, uint64_t userData, ClientId creator,
                                         MonoMillis now) {
  checkNotBusy();
  ObjectRecord rec;
  rec.size = size;
  rec.userData = userData;
  rec.createdAt = now;
  rec.state = ObjectState::CREATING;
  return insert(rec, creator);
}

ObjectTable::Created ObjectTable::createSealed(uint64_t size, uint64_t hashHi, uint64_t hashLo,
                                               uint64_t userData, ClientId creator,
                                               MonoMillis now) {
  checkNotBusy();
  ObjectRecord rec;
  rec.size = size;
  rec.hashHi = hashHi;
  rec.hashLo = hashLo;
  rec.userData = userData;
  rec.createdAt = now;
  rec.state = ObjectState::SEALED;
  return insert(rec, creator);
}

bool ObjectTable::seal(ObjectId id, uint64_t hashHi, uint64_t hashLo) {
  checkNotBusy();
  auto it = lookup(id);
  if (it == objects_.end()) return false;
  ObjectRecord& r = it->second.rec;
  if (r.dead || r.state != ObjectState::CREATING) return false;
  --perState_[stateIndex(r.state)];
  r.state = ObjectState::SEALED;
  ++perState_[stateIndex(r.state)];
  r.hashHi = hashHi;
  r.hashLo = hashLo;
  return true;
}

HolderId ObjectTable::linkHolder(SlotMap::iterator it, ClientId client) {
  Slot& slot = it->second;
  HolderId id = nextHolder_;
  // New holders go to the front of the object's chain.
  holders_.emplace(id, Holder{it->first, client, 0, slot.firstHolder});
  ++nextHolder_;
  if (slot.firstHolder != 0) holders_.find(slot.firstHolder)->second.prev = id;
  slot.firstHolder = id;
  ++slot.rec.holders;
  return id;
}

HolderId ObjectTable::addHolder(ObjectId id, ClientId client) {
  checkNotBusy();
  auto it = lookup(id);
  if (it == objects_.end() || it->second.rec.dead) return 0;
  return linkHolder(it, client);
}

bool ObjectTable::removeHolder(HolderId holder) {
  checkNotBusy();
  auto h = holders_.find(holder);
  if (h == holders_.end()) return false;
  Holder entry = h->second;
  holders_.erase(h);
  auto it = objects_.find(entry.objectLo);
  assert(it != objects_.end() && "holder of an object not in the table");
  if (entry.prev != 0) {
    holders_.find(entry.prev)->second.next = entry.next;
  } else {
    it->second.firstHolder = entry.next;
  }
  if (entry.next != 0) holders_.find(entry.next)->second.prev = entry.prev;
  --it->second.rec.holders;
  onRefDropped(it);
  return true;
}

bool ObjectTable::addLease(ObjectId id, Secret secret, MonoMillis expiresAt, uint32_t uses) {
  checkNotBusy();
  auto it = lookup(id);
  if (it == objects_.end() || it->second.rec.dead) return false;
  auto lease = leasesByExpiry_.emplace(expiresAt, Lease{id.lo, secret, uses});
  try {
    leasesByObject_.emplace(id.lo, lease);
  } catch (...) {
    leasesByExpiry_.erase(lease);
    throw;
  }
  ++it->second.rec.leases;
  return true;
}

void ObjectTable::removeLease(LeaseMap::iterator lease) {
  uint64_t lo = lease->second.objectLo;
  auto range = leasesByObject_.equal_range(lo);
  for (auto i = range.first; i != range.second; ++i) {
    if (i->second == lease) {
      leasesByObject_.erase(i);
      break;
    }
  }
  leasesByExpiry_.erase(lease);
  auto it = objects_.find(lo);
  assert(it != objects_.end() && "lease on an object not in the table");
  --it->second.rec.leases;
  onRefDropped(it);
}

RedeemResult ObjectTable::redeemLease(ObjectId id, Secret secret, MonoMillis now,
                                      ClientId client, HolderId* holderOut) {
  checkNotBusy();
  assert(holderOut != nullptr);
  *holderOut = 0;
  auto it = lookup(id);
  if (it == objects_.end() || it->second.rec.dead) return RedeemResult::NOT_FOUND;
  // Compare against every lease of the object without stopping early, so timing depends only on
  // how many leases the object has, never on the secret.
  std::optional<LeaseMap::iterator> match;
  auto range = leasesByObject_.equal_range(id.lo);
  for (auto i = range.first; i != range.second; ++i) {
    if (secretEquals(i->second->second.secret, secret) && !match) match = i->second;
  }
  if (!match) return RedeemResult::NOT_FOUND;
  LeaseMap::iterator lease = *match;
  if (lease->first <= now) {
    removeLease(lease);
    return RedeemResult::EXPIRED;
  }
  // Holder first: the lease may be this object's last reference.
  HolderId holder = linkHolder(it, client);
  uint32_t& uses = lease->second.usesLeft;
  if (uses != 0 && --uses == 0) removeLease(lease);
  *holderOut = holder;
  return RedeemResult::OK;
}

size_t ObjectTable::expireLeases(MonoMillis now) {
  checkNotBusy();
  size_t removed = 0;
  while (!leasesByExpiry_.empty() && leasesByExpiry_.begin()->first <= now) {
    removeLease(leasesByExpiry_.begin());
    ++removed;
  }
  return removed;
}

std::optional<MonoMillis> ObjectTable::nextLeaseExpiry() const {
  if (leasesByExpiry_.empty()) return std::nullopt;
  return leasesByExpiry_.begin()->first;
}

bool ObjectTable::pin(ObjectId id) {
  checkNotBusy();
  auto it = lookup(id);
  if (it == objects_.end() || it->second.rec.dead) return false;
  ++it->second.rec.pins;
  return true;
}

bool ObjectTable::unpin(ObjectId id) {
  checkNotBusy();
  auto it = lookup(id);
  if (it == objects_.end() || it->second.rec.pins == 0) return false;
  ObjectRecord& r = it->second.rec;
  --r.pins;
  if (r.dead && r.pins == 0) {
    --deadPinned_;
    reclaim(it);
  }
  return true;
}

void ObjectTable::onRefDropped(SlotMap::iterator it) {
  ObjectRecord& r = it->second.rec;
  if (refCount(r) != 0) return;
  r.dead = true;
  liveBytes_ -= r.size;
  if (r.pins == 0) {
    reclaim(it);
  } else {
    ++deadPinned_;
  }
}

void ObjectTable::reclaim(SlotMap::iterator it) {
  // Take the object out before telling the owner, so the callback (and anything it reads) sees
  // a table that no longer contains it, and the owner may free the memory right away.
  const ObjectRecord rec = it->second.rec;
  --perState_[stateIndex(rec.state)];
  objects_.erase(it);
  if (onReclaim_) {
    BusyScope busy(busy_);
    onReclaim_(rec);
  }
}

const ObjectRecord* ObjectTable::find(ObjectId id) const {
  auto it = lookup(id);
  return it == objects_.end() ? nullptr : &it->second.rec;
}

void ObjectTable::forEach(const std::function<void(const ObjectRecord&)>& fn) const {
  BusyScope busy(busy_);
  for (const auto& entry : objects_) fn(entry.second.rec);
}

std::vector<std::pair<HolderId, ClientId>> ObjectTable::holdersOf(ObjectId id) const {
  std::vector<std::pair<HolderId, ClientId>> out;
  auto it = lookup(id);
  if (it == objects_.end()) return out;
  out.reserve(it->second.rec.holders);
  for (HolderId h = it->second.firstHolder; h != 0;) {
    const Holder& entry = holders_.find(h)->second;
    out.emplace_back(h, entry.client);
    h = entry.next;
  }
  return out;
}

ObjectTable::Stats ObjectTable::stats() const {
  Stats s{};
  s.objects = objects_.size();
  s.liveBytes = liveBytes_;
  s.deadPinned = deadPinned_;
  s.holders = holders_.size();
  s.leases = leasesByExpiry_.size();
  for (size_t i = 0; i < kNumObjectStates; ++i) s.perState[i] = perState_[i];
  return s;
}

}  // namespace refstore::gc
