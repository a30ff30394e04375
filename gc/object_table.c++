#include "gc/object_table.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <unordered_set>

namespace refstore::gc {

// One record per object at up to millions of objects: keep it from growing by accident (with
// the holder-chain head and the creator's holder it makes a 96-byte slab slot).
static_assert(sizeof(ObjectRecord) <= 80, "ObjectRecord grew; check field order and padding");
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

ObjectTable::SlotRef ObjectTable::findKey(uint64_t key) const {
  if ((key & kProxyKey) != 0) return atSlot(static_cast<uint32_t>(key));
  auto slot = objectsByLo_.find(key, loOf());
  return slot ? atSlot(*slot) : SlotRef{};
}

ObjectId ObjectTable::idOfKey(uint64_t key) const {
  if ((key & kProxyKey) == 0) return ObjectId{epoch_, key};
  return objects_.get(static_cast<uint32_t>(key))->rec.id;
}

ObjectTable::SlotRef ObjectTable::lookup(ObjectId id) const {
  if (id.hi == epoch_) {
    // A local lo never has the proxy bit; one that does is a forged id, not a proxy's key.
    return (id.lo & kProxyKey) == 0 ? findKey(id.lo) : SlotRef{};
  }
  auto slot = proxiesById_.findIf(proxyHash(id), [this, id](uint32_t number) {
    return objects_.get(number)->rec.id == id;
  });
  return slot ? atSlot(*slot) : SlotRef{};
}

ObjectTable::SlotRef ObjectTable::lookupLive(ObjectId id) const {
  SlotRef it = lookup(id);
  return it && !it->rec.dead ? it : SlotRef{};
}

ObjectTable::Holder* ObjectTable::findHolder(HolderId id) const {
  if ((id & kCreatorHolderBit) != 0 || (id & 0xffffffffu) == 0) return nullptr;
  Holder* h = holders_.get(static_cast<uint32_t>(id - 1));  // the low half is slot + 1
  return h != nullptr && h->generation == static_cast<uint32_t>(id >> 32) ? h : nullptr;
}

ObjectTable::SlotRef ObjectTable::findCreatorHolder(HolderId id) const {
  if ((id & kCreatorHolderBit) == 0 || (id & 0xffffffffu) == 0) return SlotRef{};
  SlotRef it = atSlot(static_cast<uint32_t>(id - 1));
  uint32_t want = kCreatorLive | static_cast<uint32_t>(id >> 32);  // bit 63 -> bit 31
  return it && it->creator == want ? it : SlotRef{};
}

ObjectTable::Created ObjectTable::insert(ObjectRecord rec, ClientId creator) {
  const bool proxy = rec.state == ObjectState::REMOTE;
  if (!proxy) {
    assert(nextObjectLo_ < kProxyKey && "local ids ran into proxy keys");
    rec.id = ObjectId{epoch_, nextObjectLo_};
  }
  // Each step may throw (allocation); each undoes the ones before, so a failed insert changes
  // no counter and does not use the id.
  auto slot = objects_.allocate();
  Slot& s = *slot.value;
  s.rec = rec;
  try {
    if (proxy) {
      proxiesById_.insert(proxyHash(rec.id), slot.slot, proxyHashOf());
    } else {
      objectsByLo_.insert(rec.id.lo, slot.slot, loOf());
    }
  } catch (...) {
    objects_.free(slot.slot);
    throw;
  }
  // The creator holds it from creation, through the holder inside the slot (its start time is
  // rec.createdAt).
  s.rec.holders = 1;
  s.creator = kCreatorLive | slot.generation;
  s.creatorClient = creator;
  ++creatorHolders_;
  HolderId writer = creatorHolderIdOf(slot.slot, slot.generation);
  if (!proxy) ++nextObjectLo_;
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
                                               MonoMillis now,
                                               const std::vector<ObjectId>& children) {
  checkNotBusy();
  std::vector<uint64_t> kids;
  if (!liveChildren(children, &kids)) return Created{ObjectId{}, 0};
  ObjectRecord rec;
  rec.size = size;
  rec.hashHi = hashHi;
  rec.hashLo = hashLo;
  rec.userData = userData;
  rec.createdAt = now;
  rec.state = ObjectState::SEALED;
  // The children entry goes in under the id insert() is about to assign, before the object:
  // either step may throw, and undoing a map entry is simpler than undoing an insert.
  const uint64_t lo = nextObjectLo_;
  if (!kids.empty()) children_.emplace(lo, std::move(kids));
  Created created;
  try {
    created = insert(rec, creator);
  } catch (...) {
    children_.erase(lo);
    throw;
  }
  assert(created.id.lo == lo);
  // Counting cannot throw; only now does any child's count move.
  auto c = children_.find(lo);
  if (c != children_.end()) {
    for (uint64_t kid : c->second) {
      ++findKey(kid)->rec.parents;
      ++parentRefs_;
    }
  }
  return created;
}

ObjectTable::Created ObjectTable::createPromise(ClientId creator, MonoMillis now) {
  checkNotBusy();
  ObjectRecord rec;
  rec.createdAt = now;
  rec.state = ObjectState::PROMISED;
  return insert(rec, creator);
}

bool ObjectTable::liveChildren(const std::vector<ObjectId>& children,
                               std::vector<uint64_t>* out) const {
  out->reserve(children.size());
  for (ObjectId child : children) {
    SlotRef it = lookupLive(child);
    if (!it) return false;
    out->push_back(keyOf(it));
  }
  return true;
}

bool ObjectTable::wouldContainItself(uint64_t self, const std::vector<uint64_t>& from) const {
  // Every link into `self` counts in its `parents`; with none, only self-listing can cycle.
  // This keeps the common case (nothing contains the object being settled yet) O(children).
  if (findKey(self)->rec.parents == 0) {
    return std::find(from.begin(), from.end(), self) != from.end();
  }
  // Iterative: containment chains may be far deeper than the stack. `seen` keeps shared
  // sub-graphs (a DAG, since cycles are never admitted) from being walked more than once.
  std::vector<uint64_t> stack(from.begin(), from.end());
  std::unordered_set<uint64_t> seen;
  while (!stack.empty()) {
    uint64_t key = stack.back();
    stack.pop_back();
    if (key == self) return true;
    if (!seen.insert(key).second) continue;
    auto c = children_.find(key);
    if (c != children_.end()) stack.insert(stack.end(), c->second.begin(), c->second.end());
    auto a = aliases_.find(key);
    if (a != aliases_.end()) stack.push_back(a->second);
  }
  return false;
}

void ObjectTable::linkChildren(uint64_t parentKey, std::vector<uint64_t> kids) {
  if (kids.empty()) return;
  // The only allocation comes first, so a throw leaves no count changed.
  auto c = children_.emplace(parentKey, std::move(kids)).first;
  for (uint64_t kid : c->second) {
    ++findKey(kid)->rec.parents;
    ++parentRefs_;
  }
}

bool ObjectTable::seal(ObjectId id, uint64_t hashHi, uint64_t hashLo,
                       const std::vector<ObjectId>& children) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it || it->rec.state != ObjectState::CREATING) return false;
  std::vector<uint64_t> kids;
  if (!liveChildren(children, &kids)) return false;
  // A CREATING object has no Ref but its writer's, yet it can still be listed as a child (or
  // list itself), so the check is not only for promises. It is free when nothing contains it.
  if (wouldContainItself(keyOf(it), kids)) return false;
  linkChildren(keyOf(it), std::move(kids));
  ObjectRecord& r = it->rec;
  --perState_[stateIndex(r.state)];
  r.state = ObjectState::SEALED;
  ++perState_[stateIndex(r.state)];
  r.hashHi = hashHi;
  r.hashLo = hashLo;
  return true;
}

bool ObjectTable::fulfill(ObjectId promise, uint64_t size, uint64_t userData, uint64_t hashHi,
                          uint64_t hashLo, const std::vector<ObjectId>& children) {
  checkNotBusy();
  auto it = lookupLive(promise);
  if (!it || it->rec.state != ObjectState::PROMISED) return false;
  std::vector<uint64_t> kids;
  if (!liveChildren(children, &kids)) return false;
  if (wouldContainItself(keyOf(it), kids)) return false;
  linkChildren(keyOf(it), std::move(kids));
  ObjectRecord& r = it->rec;
  --perState_[stateIndex(r.state)];
  r.state = ObjectState::SEALED;
  ++perState_[stateIndex(r.state)];
  r.size = size;
  r.userData = userData;
  r.hashHi = hashHi;
  r.hashLo = hashLo;
  liveBytes_ += size;
  return true;
}

bool ObjectTable::fulfillWith(ObjectId promise, ObjectId target) {
  checkNotBusy();
  auto it = lookupLive(promise);
  if (!it || it->rec.state != ObjectState::PROMISED) return false;
  auto t = lookupLive(target);
  if (!t) return false;
  if (wouldContainItself(keyOf(it), {keyOf(t)})) return false;
  aliases_.emplace(keyOf(it), keyOf(t));  // may throw: nothing changed yet
  ++t->rec.parents;
  ++parentRefs_;
  ObjectRecord& r = it->rec;
  --perState_[stateIndex(r.state)];
  r.state = ObjectState::SEALED;
  ++perState_[stateIndex(r.state)];
  r.alias = true;
  return true;
}

bool ObjectTable::reject(ObjectId promise) {
  checkNotBusy();
  auto it = lookupLive(promise);
  if (!it || it->rec.state != ObjectState::PROMISED) return false;
  ObjectRecord& r = it->rec;
  --perState_[stateIndex(r.state)];
  r.state = ObjectState::FAILED;
  ++perState_[stateIndex(r.state)];
  return true;
}

bool ObjectTable::setSpilled(ObjectId id, bool spilled, uint64_t userData) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it) return false;
  ObjectRecord& r = it->rec;
  ObjectState from = spilled ? ObjectState::SEALED : ObjectState::SPILLED;
  if (r.state != from || r.alias) return false;
  --perState_[stateIndex(r.state)];
  r.state = spilled ? ObjectState::SPILLED : ObjectState::SEALED;
  ++perState_[stateIndex(r.state)];
  r.userData = userData;
  return true;
}

bool ObjectTable::setHash(ObjectId id, uint64_t hashHi, uint64_t hashLo) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it) return false;
  ObjectRecord& r = it->rec;
  if ((r.state != ObjectState::SEALED && r.state != ObjectState::SPILLED) || r.alias) return false;
  r.hashHi = hashHi;
  r.hashLo = hashLo;
  return true;
}

HolderId ObjectTable::linkHolder(uint32_t objectSlot, ClientId client, MonoMillis now) {
  Slot& slot = *objects_.get(objectSlot);
  auto made = holders_.allocate();  // the only step that can throw
  Holder& h = *made.value;
  h.object = objectSlot;
  h.generation = made.generation;
  h.remote = 0;
  h.client = client;
  h.since = now;
  // New holders go to the front of the object's chain.
  h.next = slot.firstHolder;
  if (slot.firstHolder != 0) holders_.get(slot.firstHolder - 1)->prev = made.slot + 1;
  slot.firstHolder = made.slot + 1;
  ++slot.rec.holders;
  return holderIdOf(made.slot, made.generation);
}

HolderId ObjectTable::addHolder(ObjectId id, ClientId client, MonoMillis now) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it) return 0;
  return linkHolder(it.number, client, now);
}

bool ObjectTable::removeHolder(HolderId holder) {
  checkNotBusy();
  if (SlotRef it = findCreatorHolder(holder)) {
    it->creator &= ~kCreatorLive;  // for good: a creator holder is never re-added
    --creatorHolders_;
    --it->rec.holders;
    onRefDropped(it);
    return true;
  }
  if (findHolder(holder) == nullptr) return false;
  unlinkHolder(static_cast<uint32_t>(holder - 1));  // the low half is slot + 1
  return true;
}

void ObjectTable::unlinkHolder(uint32_t slot) {
  const Holder entry = *holders_.get(slot);
  SlotRef it = atSlot(entry.object);
  assert(it && "holder of an object not in the table");
  if (entry.remote) {  // nothing below throws
    auto r = remoteHolders_.find(slot);
    assert(r != remoteHolders_.end() && "remote holder without its state");
    const RemoteHolder remote = r->second;
    remoteHolders_.erase(r);
    remoteByPeer_.erase(PeerHolder{remote.peer, remote.detached, keyOf(it), slot});
    if (remote.detached) detachedByDeadline_.erase({remote.deadline, slot});
  }
  if (entry.prev != 0) {
    holders_.get(entry.prev - 1)->next = entry.next;
  } else {
    it->firstHolder = entry.next;
  }
  if (entry.next != 0) holders_.get(entry.next - 1)->prev = entry.prev;
  holders_.free(slot);
  --it->rec.holders;
  onRefDropped(it);
}

// ---- leases ----

ObjectTable::Lease* ObjectTable::findLease(LeaseId id, uint32_t* slotOut) const {
  if ((id & kCreatorHolderBit) != 0 || (id & 0xffffffffu) == 0) return nullptr;
  uint32_t slot = static_cast<uint32_t>(id - 1);  // the low half is slot + 1
  Lease* lease = leases_.get(slot);
  if (lease == nullptr || lease->generation != static_cast<uint32_t>(id >> 32)) return nullptr;
  *slotOut = slot;
  return lease;
}

void ObjectTable::heapPlace(size_t index, HeapEntry entry) {
  leaseHeap_[index] = entry;
  leases_.get(entry.slot)->heapIndex = static_cast<uint32_t>(index);
}

void ObjectTable::heapUp(size_t index, HeapEntry entry) {
  while (index > 0) {
    size_t parent = (index - 1) / kHeapArity;
    if (leaseHeap_[parent].expiresAt <= entry.expiresAt) break;
    heapPlace(index, leaseHeap_[parent]);
    index = parent;
  }
  heapPlace(index, entry);
}

void ObjectTable::heapDown(size_t index, HeapEntry entry) {
  const size_t size = leaseHeap_.size();
  for (;;) {
    size_t first = index * kHeapArity + 1;
    if (first >= size) break;
    size_t smallest = first;
    for (size_t child = first + 1; child < std::min(first + kHeapArity, size); ++child) {
      if (leaseHeap_[child].expiresAt < leaseHeap_[smallest].expiresAt) smallest = child;
    }
    if (leaseHeap_[smallest].expiresAt >= entry.expiresAt) break;
    heapPlace(index, leaseHeap_[smallest]);
    index = smallest;
  }
  heapPlace(index, entry);
}

LeaseId ObjectTable::addLease(ObjectId id, Secret secret, MonoMillis expiresAt, uint32_t uses,
                              ClientId minter) {
  checkNotBusy();
  auto it = lookupLive(id);
  // A proxy's tokens are its owner's to mint.
  if (!it || isProxy(it->rec)) return 0;
  // The allocations come first, so a throw leaves nothing changed (the empty entries they may
  // leave in the maps are harmless).
  if (leaseHeap_.size() == leaseHeap_.capacity()) {
    leaseHeap_.reserve(std::max<size_t>(64, 2 * leaseHeap_.capacity()));
  }
  auto chain = leaseChains_.try_emplace(keyOf(it), 0).first;
  auto minted = leasesByMinter_.try_emplace(minter, 0).first;
  auto made = leases_.allocate();
  Lease& lease = *made.value;
  lease.secret = secret;
  lease.expiresAt = expiresAt;
  lease.object = it.number;
  lease.generation = made.generation;
  lease.usesLeft = uses;
  lease.minter = minter;
  ++minted->second;
  // New leases go to the front of the object's chain.
  lease.next = chain->second;
  if (chain->second != 0) leases_.get(chain->second - 1)->prev = made.slot + 1;
  chain->second = made.slot + 1;
  leaseHeap_.push_back(HeapEntry{expiresAt, made.slot});
  heapUp(leaseHeap_.size() - 1, leaseHeap_.back());
  ++it->rec.leases;
  return leaseIdOf(made.slot, made.generation);
}

uint64_t ObjectTable::leasesMintedBy(ClientId minter) const {
  auto found = leasesByMinter_.find(minter);
  return found == leasesByMinter_.end() ? 0 : found->second;
}

std::vector<MonoMillis> ObjectTable::leaseExpiriesOf(ObjectId id, size_t limit) const {
  std::vector<MonoMillis> out;
  SlotRef it = lookup(id);
  if (!it) return out;
  auto chain = leaseChains_.find(keyOf(it));
  if (chain == leaseChains_.end()) return out;
  for (uint32_t l = chain->second; l != 0;) {
    const Lease& lease = *leases_.get(l - 1);
    out.push_back(lease.expiresAt);
    l = lease.next;
  }
  if (out.size() > limit) {
    std::nth_element(out.begin(), out.begin() + limit, out.end());
    out.resize(limit);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void ObjectTable::removeLease(uint32_t slot) {
  const Lease lease = *leases_.get(slot);
  SlotRef it = atSlot(lease.object);
  assert(it && "lease on an object not in the table");
  // Out of the object's chain.
  if (lease.prev != 0) {
    leases_.get(lease.prev - 1)->next = lease.next;
  } else if (lease.next != 0) {
    leaseChains_.find(keyOf(it))->second = lease.next;
  } else {
    leaseChains_.erase(keyOf(it));
  }
  if (lease.next != 0) leases_.get(lease.next - 1)->prev = lease.prev;
  auto minted = leasesByMinter_.find(lease.minter);
  if (--minted->second == 0) leasesByMinter_.erase(minted);
  // Out of the heap: the last entry fills the hole, moving up or down to where it belongs.
  HeapEntry last = leaseHeap_.back();
  leaseHeap_.pop_back();
  size_t index = lease.heapIndex;
  if (index < leaseHeap_.size()) {
    if (index > 0 && last.expiresAt < leaseHeap_[(index - 1) / kHeapArity].expiresAt) {
      heapUp(index, last);
    } else {
      heapDown(index, last);
    }
  }
  leases_.free(slot);
  --it->rec.leases;
  onRefDropped(it);
}

RedeemResult ObjectTable::redeemLease(LeaseId leaseId, ObjectId id, Secret secret,
                                      MonoMillis now, ClientId client, HolderId* holderOut) {
  checkNotBusy();
  assert(holderOut != nullptr);
  *holderOut = 0;
  auto it = lookupLive(id);
  if (!it) return RedeemResult::NOT_FOUND;
  uint32_t slot = 0;
  Lease* lease = findLease(leaseId, &slot);
  // The secret is compared whenever a lease was found, in constant time; another object's
  // lease is refused after the same comparison.
  bool match = lease != nullptr && secretEquals(lease->secret, secret);
  if (!match || lease->object != it.number) return RedeemResult::NOT_FOUND;
  if (lease->expiresAt <= now) {
    removeLease(slot);
    return RedeemResult::EXPIRED;
  }
  // Holder first: the lease may be this object's last reference.
  HolderId holder = linkHolder(it.number, client, now);
  lease = leases_.get(slot);  // linkHolder allocated in another slab: still valid, re-read anyway
  if (lease->usesLeft != 0 && --lease->usesLeft == 0) removeLease(slot);
  *holderOut = holder;
  return RedeemResult::OK;
}

size_t ObjectTable::expireLeases(MonoMillis now, size_t limit) {
  checkNotBusy();
  size_t removed = 0;
  while (removed < limit && !leaseHeap_.empty() && leaseHeap_.front().expiresAt <= now) {
    removeLease(leaseHeap_.front().slot);
    ++removed;
  }
  return removed;
}

std::optional<MonoMillis> ObjectTable::nextLeaseExpiry() const {
  if (leaseHeap_.empty()) return std::nullopt;
  return leaseHeap_.front().expiresAt;
}

// ---- many hosts: proxies ----

ObjectTable::Created ObjectTable::createProxy(ObjectId ownerId, ClientId creator,
                                              MonoMillis now) {
  checkNotBusy();
  if (ownerId.hi == epoch_ || ownerId.lo == 0 || lookup(ownerId)) {
    return Created{ObjectId{}, 0};
  }
  ObjectRecord rec;
  rec.id = ownerId;
  rec.createdAt = now;
  rec.state = ObjectState::REMOTE;
  return insert(rec, creator);
}

bool ObjectTable::setProxyBytes(ObjectId id, uint64_t size, uint64_t userData, uint64_t hashHi,
                                uint64_t hashLo) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it || !isProxy(it->rec) || it->rec.bytesLocal) return false;
  ObjectRecord& r = it->rec;
  liveBytes_ = liveBytes_ - r.size + size;
  proxyBytes_ += size;
  r.size = size;
  r.userData = userData;
  r.hashHi = hashHi;
  r.hashLo = hashLo;
  r.bytesLocal = true;
  return true;
}

bool ObjectTable::clearProxyBytes(ObjectId id) {
  checkNotBusy();
  auto it = lookupLive(id);
  // A pinned copy is being read in place: it cannot go until its Views do.
  if (!it || !isProxy(it->rec) || !it->rec.bytesLocal || it->rec.pins != 0) return false;
  ObjectRecord& r = it->rec;
  proxyBytes_ -= r.size;
  r.userData = 0;
  r.bytesLocal = false;
  return true;
}

bool ObjectTable::reviveProxy(ObjectId id) {
  checkNotBusy();
  auto it = lookup(id);
  if (!it || !it->rec.dead || !isProxy(it->rec)) return false;
  ObjectRecord& r = it->rec;  // dead and not reclaimed: pinned (markDead's inverse)
  r.dead = false;
  liveBytes_ += r.size;
  --deadPinned_;
  return true;
}

bool ObjectTable::setProxyInfo(ObjectId id, uint64_t size, uint64_t hashHi, uint64_t hashLo) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it || !isProxy(it->rec)) return false;
  ObjectRecord& r = it->rec;
  if (r.bytesLocal) return r.size == size && r.hashHi == hashHi && r.hashLo == hashLo;
  liveBytes_ = liveBytes_ - r.size + size;
  r.size = size;
  r.hashHi = hashHi;
  r.hashLo = hashLo;
  return true;
}

// ---- many hosts: remote holders ----

bool ObjectTable::markRemote(HolderId holder, PeerId peer) {
  checkNotBusy();
  Holder* h = findHolder(holder);  // null for creator holders too
  if (h == nullptr || h->remote) return false;
  const uint32_t slot = static_cast<uint32_t>(holder - 1);  // the low half is slot + 1
  const uint64_t object = keyOf(atSlot(h->object));
  // Both allocations before the flag is set; the second undoes the first if it throws.
  auto added = remoteHolders_.emplace(slot, RemoteHolder{peer}).first;
  try {
    remoteByPeer_.insert(PeerHolder{peer, false, object, slot});
  } catch (...) {
    remoteHolders_.erase(added);
    throw;
  }
  h->remote = 1;
  return true;
}

size_t ObjectTable::detachPeer(PeerId peer, MonoMillis deadline) {
  checkNotBusy();
  // The peer's attached holders are one range, followed by its detached ones.
  auto first = remoteByPeer_.lower_bound(PeerHolder{peer, false, 0, 0});
  // The only allocations: the deadline entries, made in a set of their own and spliced in
  // (no allocation) once nothing can fail any more.
  std::set<std::pair<MonoMillis, uint32_t>> due;
  size_t count = 0;
  for (auto i = first; i != remoteByPeer_.end() && i->peer == peer && !i->detached; ++i) {
    due.emplace(deadline, i->holder);
    ++count;
  }
  // Each entry moves to the detached range, which lies after the attached one, so the next
  // attached entry is always the successor of the one being moved (counted, because the last
  // one's successor may already be a moved entry). Moving a node does not allocate.
  for (size_t k = 0; k < count; ++k) {
    auto next = std::next(first);
    auto node = remoteByPeer_.extract(first);
    node.value().detached = true;
    RemoteHolder& r = remoteHolders_.find(node.value().holder)->second;
    r.detached = true;
    r.deadline = deadline;
    remoteByPeer_.insert(std::move(node));
    first = next;
  }
  detachedByDeadline_.merge(due);
  return count;
}

HolderId ObjectTable::reattach(PeerId peer, ObjectId id, ClientId client) {
  checkNotBusy();
  // A detached holder keeps its object alive, so a dead or unknown object has none.
  SlotRef it = lookupLive(id);
  if (!it) return 0;
  const uint64_t object = keyOf(it);
  auto i = remoteByPeer_.lower_bound(PeerHolder{peer, true, object, 0});
  if (i == remoteByPeer_.end() || i->peer != peer || !i->detached || i->object != object) {
    return 0;
  }
  const uint32_t slot = i->holder;
  auto node = remoteByPeer_.extract(i);
  node.value().detached = false;
  remoteByPeer_.insert(std::move(node));  // a node move: no allocation
  RemoteHolder& r = remoteHolders_.find(slot)->second;
  detachedByDeadline_.erase({r.deadline, slot});
  r.detached = false;
  r.deadline = 0;
  Holder& h = *holders_.get(slot);
  h.client = client;
  return holderIdOf(slot, h.generation);
}

size_t ObjectTable::expireDetached(MonoMillis now, size_t limit) {
  checkNotBusy();
  size_t removed = 0;
  std::exception_ptr error;
  while (removed < limit && !detachedByDeadline_.empty() &&
         detachedByDeadline_.begin()->first <= now) {
    // A throwing reclaim callback does not stop the expiry: every removal completes its own
    // cascade before rethrowing, so the table is consistent; the first exception is rethrown
    // once the slice is done, as for a cascade.
    try {
      unlinkHolder(detachedByDeadline_.begin()->second);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
    ++removed;
  }
  if (error) std::rethrow_exception(error);
  return removed;
}

std::optional<MonoMillis> ObjectTable::nextDetachedExpiry() const {
  if (detachedByDeadline_.empty()) return std::nullopt;
  return detachedByDeadline_.begin()->first;
}

size_t ObjectTable::dropPeer(PeerId peer) {
  checkNotBusy();
  std::vector<uint32_t> slots;  // the only allocation, before anything changes
  for (auto i = remoteByPeer_.lower_bound(PeerHolder{peer, true, 0, 0});
       i != remoteByPeer_.end() && i->peer == peer; ++i) {
    slots.push_back(i->holder);
  }
  // Removing a holder never removes another (a cascade only reclaims objects nobody holds),
  // so every slot collected is still this peer's detached holder when its turn comes.
  std::exception_ptr error;
  for (uint32_t slot : slots) {
    try {
      unlinkHolder(slot);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return slots.size();
}

std::optional<PeerId> ObjectTable::remotePeerOf(HolderId holder) const {
  const Holder* h = findHolder(holder);
  if (h == nullptr || !h->remote) return std::nullopt;
  return remoteHolders_.find(static_cast<uint32_t>(holder - 1))->second.peer;
}

uint64_t ObjectTable::remoteHoldersOf(PeerId peer) const {
  auto first = remoteByPeer_.lower_bound(PeerHolder{peer, false, 0, 0});
  auto last = peer == UINT64_MAX ? remoteByPeer_.end()
                                 : remoteByPeer_.lower_bound(PeerHolder{peer + 1, false, 0, 0});
  return std::distance(first, last);
}

bool ObjectTable::heldAttachedBy(PeerId peer, ObjectId id) const {
  SlotRef it = lookupLive(id);
  if (!it) return false;
  const uint64_t object = keyOf(it);
  auto i = remoteByPeer_.lower_bound(PeerHolder{peer, false, object, 0});
  return i != remoteByPeer_.end() && i->peer == peer && !i->detached && i->object == object;
}

bool ObjectTable::isDetached(HolderId holder) const {
  const Holder* h = findHolder(holder);
  if (h == nullptr || !h->remote) return false;
  return remoteHolders_.find(static_cast<uint32_t>(holder - 1))->second.detached;
}

// ---- pins ----

bool ObjectTable::pin(ObjectId id) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it) return false;
  ++it->rec.pins;
  return true;
}

bool ObjectTable::unpin(ObjectId id) {
  checkNotBusy();
  auto it = lookup(id);
  if (!it || it->rec.pins == 0) return false;
  ObjectRecord& r = it->rec;
  --r.pins;
  if (r.dead && r.pins == 0) {
    --deadPinned_;
    std::exception_ptr error;
    reclaim(it, &error);
    if (error) std::rethrow_exception(error);
  }
  return true;
}

// ---- names ----

NameResult ObjectTable::addName(ObjectId id, std::string name) {
  checkNotBusy();
  auto it = lookupLive(id);
  if (!it) return NameResult::NOT_FOUND;
  auto added = names_.emplace(std::move(name), keyOf(it));
  if (!added.second) return NameResult::DUPLICATE;
  try {
    namesByObject_.emplace(keyOf(it), std::string_view(added.first->first));
  } catch (...) {
    names_.erase(added.first);
    throw;
  }
  ++it->rec.names;
  return NameResult::OK;
}

NameResult ObjectTable::removeName(const std::string& name) {
  checkNotBusy();
  auto n = names_.find(name);
  if (n == names_.end()) return NameResult::NOT_FOUND;
  auto it = findKey(n->second);
  assert(it && "name of an object not in the table");
  auto range = namesByObject_.equal_range(n->second);
  for (auto i = range.first; i != range.second; ++i) {
    if (i->second.data() == n->first.data()) {
      namesByObject_.erase(i);
      break;
    }
  }
  names_.erase(n);
  --it->rec.names;
  onRefDropped(it);
  return NameResult::OK;
}

std::optional<ObjectId> ObjectTable::lookupName(const std::string& name) const {
  auto n = names_.find(name);
  if (n == names_.end()) return std::nullopt;
  return idOfKey(n->second);
}

std::vector<std::string> ObjectTable::namesOf(ObjectId id) const {
  std::vector<std::string> out;
  auto it = lookup(id);
  if (!it || it->rec.names == 0) return out;
  out.reserve(it->rec.names);
  auto range = namesByObject_.equal_range(keyOf(it));
  for (auto i = range.first; i != range.second; ++i) out.emplace_back(i->second);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, ObjectId>> ObjectTable::listNames(const std::string& after,
                                                                     size_t limit,
                                                                     bool* more) const {
  std::vector<std::pair<std::string, ObjectId>> out;
  auto n = after.empty() ? names_.begin() : names_.upper_bound(after);
  for (; n != names_.end() && out.size() < limit; ++n) {
    out.emplace_back(n->first, idOfKey(n->second));
  }
  *more = n != names_.end();
  return out;
}

std::vector<std::pair<std::string, ObjectId>> ObjectTable::listNames() const {
  std::vector<std::pair<std::string, ObjectId>> out;
  out.reserve(names_.size());
  for (const auto& [name, key] : names_) out.emplace_back(name, idOfKey(key));
  return out;
}

// ---- containment and aliases (read side) ----

// Aliases and containers are local objects (a proxy is never an alias and has no children in
// gc: a remote object's nested refs are its owner's business), so only local ids are looked up
// in aliases_ and children_; their targets and children may be proxies.

ObjectId ObjectTable::resolveAlias(ObjectId id) const {
  if (id.hi != epoch_) return id;
  uint64_t key = id.lo;
  // Iterative, and finite: fulfillWith never admits a cycle.
  for (auto a = aliases_.find(key); a != aliases_.end(); a = aliases_.find(key)) key = a->second;
  return key == id.lo ? id : idOfKey(key);
}

std::optional<ObjectId> ObjectTable::aliasTarget(ObjectId id) const {
  if (id.hi != epoch_) return std::nullopt;
  auto a = aliases_.find(id.lo);
  if (a == aliases_.end()) return std::nullopt;
  return idOfKey(a->second);
}

std::vector<ObjectId> ObjectTable::childrenOf(ObjectId id) const {
  std::vector<ObjectId> out;
  if (id.hi != epoch_) return out;
  auto c = children_.find(id.lo);
  if (c == children_.end()) return out;
  out.reserve(c->second.size());
  for (uint64_t kid : c->second) out.push_back(idOfKey(kid));
  return out;
}

std::vector<ObjectId> ObjectTable::parentsOf(ObjectId id) const {
  std::vector<ObjectId> out;
  auto it = lookup(id);
  if (!it || it->rec.parents == 0) return out;
  out.reserve(it->rec.parents);
  const uint64_t key = keyOf(it);
  for (const auto& [parent, kids] : children_) {
    for (uint64_t kid : kids) {
      if (kid == key) out.push_back(idOfKey(parent));
    }
  }
  for (const auto& [alias, target] : aliases_) {
    if (target == key) out.push_back(idOfKey(alias));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- death and reclamation ----

void ObjectTable::markDead(ObjectRecord& r) {
  r.dead = true;
  liveBytes_ -= r.size;
  if (r.pins != 0) ++deadPinned_;
}

void ObjectTable::dropParentRef(uint64_t childKey, std::vector<uint64_t>* dying) {
  auto it = findKey(childKey);
  assert(it && "child of a live object not in the table");
  ObjectRecord& r = it->rec;
  --r.parents;
  --parentRefs_;
  if (refCount(r) == 0) {
    markDead(r);
    dying->push_back(childKey);
  }
}

void ObjectTable::onRefDropped(SlotRef it) {
  if (refCount(it->rec) != 0) return;
  markDead(it->rec);
  // Objects that died in this call and have yet to release their links, first in first out:
  // breadth-first, so a container is reported before the children it kept alive. A worklist
  // instead of recursion, because chains of containers or aliases can be arbitrarily deep.
  // Each object enters it once: only the drop that takes its count to zero queues it, and a
  // dead object gains no references.
  std::vector<uint64_t> dying;
  size_t next = 0;
  std::exception_ptr error;
  uint64_t key = keyOf(it);
  for (;;) {
    // Release links first (the entries are erased: a dead object contains nothing), then
    // reclaim, so the record reported is final and the callback sees the children's new counts.
    if (!children_.empty()) {
      auto c = children_.find(key);
      if (c != children_.end()) {
        std::vector<uint64_t> kids = std::move(c->second);
        children_.erase(c);
        for (uint64_t kid : kids) dropParentRef(kid, &dying);
      }
    }
    if (it->rec.alias) {
      auto a = aliases_.find(key);
      if (a != aliases_.end()) {
        uint64_t target = a->second;
        aliases_.erase(a);
        dropParentRef(target, &dying);
      }
    }
    if (it->rec.pins == 0) reclaim(it, &error);  // else reclaimed by its last unpin
    if (next == dying.size()) break;
    key = dying[next++];
    it = findKey(key);
  }
  if (error) std::rethrow_exception(error);
}

void ObjectTable::reclaim(SlotRef it, std::exception_ptr* error) {
  // Take the object out before telling the owner, so the callback (and anything it reads) sees
  // a table that no longer contains it, and the owner may free the memory right away.
  const ObjectRecord rec = it->rec;
  --perState_[stateIndex(rec.state)];
  if (isProxy(rec)) {
    proxiesById_.eraseSlot(proxyHash(rec.id), it.number, proxyHashOf());
    if (rec.bytesLocal) proxyBytes_ -= rec.size;
  } else {
    objectsByLo_.erase(rec.id.lo, loOf());
  }
  objects_.free(it.number);
  if (onReclaim_) {
    BusyScope busy(busy_);
    try {
      onReclaim_(rec);
    } catch (...) {
      if (!*error) *error = std::current_exception();
    }
  }
}

const ObjectRecord* ObjectTable::find(ObjectId id) const {
  auto it = lookup(id);
  return !it ? nullptr : &it->rec;
}

void ObjectTable::forEach(const std::function<void(const ObjectRecord&)>& fn) const {
  BusyScope busy(busy_);
  objects_.forEach([&](uint32_t, const Slot& slot) { fn(slot.rec); });
}

uint64_t ObjectTable::listPage(uint64_t cursor, size_t limit,
                               std::vector<const ObjectRecord*>* out) const {
  if (limit == 0) return cursor;
  size_t taken = 0;
  // The cursor is the next slot + 1, so that 0 can mean both "start" and "done".
  uint64_t next = objects_.visitFrom(cursor == 0 ? 0 : cursor - 1, [&](uint32_t, const Slot& slot) {
    if (taken == limit) return false;
    out->push_back(&slot.rec);
    ++taken;
    return true;
  });
  return next == Slab<Slot>::kEnd ? 0 : next + 1;
}

std::vector<std::pair<HolderId, ClientId>> ObjectTable::holdersOf(ObjectId id,
                                                                   size_t limit) const {
  std::vector<std::pair<HolderId, ClientId>> out;
  auto it = lookup(id);
  if (!it) return out;
  out.reserve(std::min<size_t>(it->rec.holders, limit));
  if ((it->creator & kCreatorLive) != 0 && limit > 0) {
    out.emplace_back(creatorHolderIdOf(it.number, it->creator & ~kCreatorLive), it->creatorClient);
  }
  for (uint32_t h = it->firstHolder; h != 0 && out.size() < limit;) {
    const Holder& entry = *holders_.get(h - 1);
    out.emplace_back(holderIdOf(h - 1, entry.generation), entry.client);
    h = entry.next;
  }
  return out;
}

std::optional<MonoMillis> ObjectTable::oldestHolderSince(ObjectId id) const {
  auto it = lookup(id);
  if (!it) return std::nullopt;
  std::optional<MonoMillis> oldest;
  if ((it->creator & kCreatorLive) != 0) oldest = it->rec.createdAt;
  for (uint32_t h = it->firstHolder; h != 0;) {
    const Holder& entry = *holders_.get(h - 1);
    if (!oldest || entry.since < *oldest) oldest = entry.since;
    h = entry.next;
  }
  return oldest;
}

std::optional<ObjectTable::HolderInfo> ObjectTable::holderInfo(HolderId holder) const {
  if (SlotRef it = findCreatorHolder(holder)) {
    return HolderInfo{it->rec.id, it->creatorClient, it->rec.createdAt};
  }
  const Holder* entry = findHolder(holder);
  if (entry == nullptr) return std::nullopt;
  return HolderInfo{objects_.get(entry->object)->rec.id, entry->client, entry->since};
}

ObjectTable::Stats ObjectTable::stats() const {
  Stats s{};
  s.objects = objects_.size();
  s.liveBytes = liveBytes_;
  s.deadPinned = deadPinned_;
  s.holders = holders_.size() + creatorHolders_;
  s.leases = leases_.size();
  s.names = names_.size();
  s.parentRefs = parentRefs_;
  s.proxies = proxiesById_.size();
  s.proxyBytes = proxyBytes_;
  s.remoteHolders = remoteHolders_.size();
  s.detachedHolders = detachedByDeadline_.size();
  for (size_t i = 0; i < kNumObjectStates; ++i) s.perState[i] = perState_[i];
  return s;
}

}  // namespace refstore::gc
