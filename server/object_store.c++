#include "server/object_store.h"

#include <time.h>
#include <xxhash.h>

#include "server/errors.h"
#include "server/log.h"
#include "server/names.h"
#include "server/packed_location.h"
#include "server/segment_server.h"
#include "server/token.h"

namespace refstore::server {
namespace {

uint64_t unixSecondsNow() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec;
}

}  // namespace

ObjectStore::ObjectStore(shm::Allocator& memory, kj::Timer& timer, uint64_t origin,
                         MemoryPolicy policy, Limits limits)
    : allocator(memory),
      policy(policy),
      bounds(limits),
      queue(timer, limits.maxWaitingPerClient),
      timer(timer),
      originEpoch(origin),
      startedAt(timer.now()),
      objects(origin, [this](const gc::ObjectRecord& record) { reclaim(record); }) {}

ObjectStore::~ObjectStore() noexcept(false) {
  // Destroying the hashes' promises waits for passes in progress: make them stop at their next
  // 1 MiB step rather than read the whole value.
  for (auto& entry: hashing) entry.value.cancelled->store(true);
}

gc::MonoMillis ObjectStore::nowMillis() const {
  return (timer.now() - kj::origin<kj::TimePoint>()) / kj::MILLISECONDS;
}

// --- clients ---------------------------------------------------------------------------

gc::ClientId ObjectStore::addClient(ClientInfo info) {
  gc::ClientId id = nextClientId++;
  info.segmentCapBudget = kj::refcounted<SegmentCapBudget>(bounds.maxSegmentCapsPerClient);
  info.replyBudget = kj::refcounted<ReplyBudget>(bounds.maxUnsentBytes);
  clients.insert(id, kj::mv(info));
  return id;
}

void ObjectStore::removeClient(gc::ClientId id) { clients.erase(id); }

ClientInfo& ObjectStore::client(gc::ClientId id) { return KJ_ASSERT_NONNULL(clients.find(id)); }

// --- objects ---------------------------------------------------------------------------

gc::ObjectTable::Created ObjectStore::create(kj::Own<Reservation> memory, uint64_t size,
                                             gc::ClientId creator) {
  shm::Allocation allocation = memory->take();
  return objects.create(size, packLocation(allocation.segmentId, allocation.offset), creator,
                        nowMillis());
}

void ObjectStore::throwChildrenRefused(gc::ObjectId id,
                                       const std::vector<gc::ObjectId>& children) const {
  for (auto child: children) {
    auto found = objects.find(child);
    RS_REQUIRE(found != nullptr && !found->dead, NOT_FOUND, "child ", gc::toHex(child).c_str(),
               " no longer exists");
  }
  RS_FAIL(CYCLE, "object ", gc::toHex(id).c_str(),
          " would contain itself through its children");
}

void ObjectStore::seal(gc::ObjectId id, const std::vector<gc::ObjectId>& children) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::CREATING, FAILED_PRECONDITION,
             "object is already ", gc::stateName(object.state));
  bytes(id);  // marks it used
  if (!objects.seal(id, 0, 0, children)) throwChildrenRefused(id, children);
  recordHash(id);
}

gc::ObjectTable::Created ObjectStore::put(kj::Own<Reservation> memory,
                                          kj::ArrayPtr<const kj::byte> data,
                                          const std::vector<gc::ObjectId>& children,
                                          gc::ClientId creator) {
  KJ_ASSERT(memory->get().size >= data.size());
  memcpy(memory->get().ptr, data.begin(), data.size());
  uint64_t packed = packLocation(memory->get().segmentId, memory->get().offset);
  auto created = objects.createSealed(data.size(), 0, 0, packed, creator, nowMillis(), children);
  if (created.writer == 0) throwChildrenRefused(created.id, children);  // memory goes back
  memory->take();
  recordHash(created.id);
  return created;
}

// --- futures ---------------------------------------------------------------------------

gc::ObjectTable::Created ObjectStore::promise(gc::ClientId creator) {
  return objects.createPromise(creator, nowMillis());
}

void ObjectStore::fulfill(gc::ObjectId id, kj::Own<Reservation> memory,
                          kj::ArrayPtr<const kj::byte> data,
                          const std::vector<gc::ObjectId>& children) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::PROMISED && !object.dead, FAILED_PRECONDITION,
             "the promise is already ", gc::stateName(object.state));
  KJ_ASSERT(memory->get().size >= data.size());
  memcpy(memory->get().ptr, data.begin(), data.size());
  uint64_t packed = packLocation(memory->get().segmentId, memory->get().offset);
  if (!objects.fulfill(id, data.size(), packed, 0, 0, children)) {
    throwChildrenRefused(id, children);  // the reservation gives the memory back
  }
  memory->take();
  recordHash(id);
  waiters.wake(id);
}

void ObjectStore::fulfillWith(gc::ObjectId id, gc::ObjectId target) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::PROMISED && !object.dead, FAILED_PRECONDITION,
             "the promise is already ", gc::stateName(object.state));
  if (!objects.fulfillWith(id, target)) throwChildrenRefused(id, {target});
  waiters.wake(id);
}

bool ObjectStore::fail(gc::ObjectId id, kj::String description) {
  auto found = objects.find(id);
  if (found == nullptr || found->state != gc::ObjectState::PROMISED || found->dead) return false;
  KJ_ASSERT(objects.reject(id));
  waiters.setFailure(id, kj::mv(description));
  waiters.wake(id);
  return true;
}

kj::Promise<void> ObjectStore::whenReady(gc::ObjectId id) {
  gc::ObjectId target = resolve(id);
  auto& object = record(target);
  switch (object.state) {
    case gc::ObjectState::PROMISED:
      // Re-evaluate from `id` once it settles: it may have become an alias of another promise.
      return waiters.wait(target).then([this, id]() { return whenReady(id); });
    case gc::ObjectState::FAILED: {
      kj::StringPtr failure = waiters.failure(target);
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                            kj::str(failure)));
    }
    default:
      return kj::READY_NOW;
  }
}

bool ObjectStore::readableNow(gc::ObjectId id) const {
  gc::ObjectState state = record(resolve(id)).state;
  return state != gc::ObjectState::PROMISED && state != gc::ObjectState::FAILED &&
         state != gc::ObjectState::SPILLED;
}

// --- access ----------------------------------------------------------------------------

const gc::ObjectRecord& ObjectStore::record(gc::ObjectId id) const {
  const gc::ObjectRecord* found = objects.find(id);
  RS_REQUIRE(found != nullptr, NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
  return *found;
}

kj::ArrayPtr<kj::byte> ObjectStore::bytes(gc::ObjectId id) {
  auto& object = record(id);
  KJ_ASSERT(gc::ObjectTable::ownsBytes(object) && object.state != gc::ObjectState::SPILLED,
            "object has no bytes in memory", gc::stateName(object.state));
  lastUsed.upsert(id.lo, nowMillis(), [](gc::MonoMillis& old, gc::MonoMillis now) { old = now; });
  return memoryOf(object);
}

kj::ArrayPtr<kj::byte> ObjectStore::memoryOf(const gc::ObjectRecord& object) const {
  uint32_t segmentId = segmentOf(object.userData);
  auto& segment = allocatorFor(segmentId).segment(segmentId);
  return kj::arrayPtr(segment.base() + offsetOf(object.userData), object.size);
}

Location ObjectStore::location(gc::ObjectId id) const {
  auto& object = record(id);
  uint32_t segmentId = segmentOf(object.userData);
  auto& owner = allocatorFor(segmentId);
  return Location{segmentId, offsetOf(object.userData), object.size,
                  owner.segment(segmentId).size(), owner.isDedicated(segmentId)};
}

gc::HolderId ObjectStore::addHolder(gc::ObjectId id, gc::ClientId client) {
  gc::HolderId holder = objects.addHolder(id, client, nowMillis());
  RS_REQUIRE(holder != 0, NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
  return holder;
}

void ObjectStore::removeHolder(gc::HolderId holder) {
  objects.removeHolder(holder);
  if (hashing.size() > 0) cancelDeadHashes();  // at most a few values are being hashed
}

void ObjectStore::pin(gc::ObjectId id) {
  RS_REQUIRE(objects.pin(id), NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
}

void ObjectStore::unpin(gc::ObjectId id) { objects.unpin(id); }

void ObjectStore::reclaim(const gc::ObjectRecord& object) {
  if (object.state == gc::ObjectState::SPILLED) {
    KJ_IF_MAYBE(disk, spill) { disk->remove(SpillLocation::unpack(object.userData, object.size)); }
  } else if (gc::ObjectTable::ownsBytes(object)) {
    release(object.userData, object.size);
    schedulePump();  // memory was freed: waiting requests may fit now
  }
  lastUsed.erase(object.id.lo);
  waiters.forget(object.id);
  reclaimedTotal++;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  lastReclaimMonoUs = uint64_t(now.tv_sec) * 1000000 + uint64_t(now.tv_nsec) / 1000;
}

// --- names -----------------------------------------------------------------------------

void ObjectStore::addName(gc::ObjectId id, kj::StringPtr name) {
  validateName(name);
  RS_REQUIRE(objects.stats().names < bounds.maxNames, RESOURCE_EXHAUSTED, "the daemon holds ",
             bounds.maxNames, " names, its limit (--max-names): unname some");
  switch (objects.addName(id, std::string(name.cStr(), name.size()))) {
    case gc::NameResult::OK: return;
    case gc::NameResult::DUPLICATE: RS_FAIL(ALREADY_EXISTS, "the name '", name, "' is taken");
    case gc::NameResult::NOT_FOUND: break;
  }
  RS_FAIL(NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
}

gc::ObjectId ObjectStore::lookupName(kj::StringPtr name) const {
  validateName(name);
  auto found = objects.lookupName(std::string(name.cStr(), name.size()));
  RS_REQUIRE(found.has_value(), NOT_FOUND, "no object is named '", name, "'");
  return *found;
}

void ObjectStore::removeName(kj::StringPtr name) {
  validateName(name);
  RS_REQUIRE(objects.removeName(std::string(name.cStr(), name.size())) == gc::NameResult::OK,
             NOT_FOUND, "no object is named '", name, "'");
}

// --- tokens ----------------------------------------------------------------------------

kj::String ObjectStore::share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses,
                              gc::ClientId client) {
  RS_REQUIRE(ttlSeconds >= 1 && ttlSeconds <= proto::MAX_TOKEN_TTL_SECONDS, INVALID_ARGUMENT,
             "ttlSeconds must be between 1 and ", proto::MAX_TOKEN_TTL_SECONDS, ", got ",
             ttlSeconds);
  RS_REQUIRE(objects.stats().leases < bounds.maxTokens, RESOURCE_EXHAUSTED, "the daemon holds ",
             bounds.maxTokens, " live share tokens, its limit (--max-tokens): let some expire "
             "or be used up");
  RS_REQUIRE(objects.leasesMintedBy(client) < bounds.maxTokensPerClient, RESOURCE_EXHAUSTED,
             "this connection has minted ", bounds.maxTokensPerClient,
             " live share tokens, the limit per connection: let some expire or be used up");
  // Any referenced object can be shared, promises included (a reader waits for the value).
  Token token;
  token.id = id;
  token.expiresUnixSeconds = unixSecondsNow() + ttlSeconds;
  token.secret = randomSecret();
  gc::MonoMillis expiresAt = nowMillis() + uint64_t(ttlSeconds) * 1000;
  token.lease = objects.addLease(id, token.secret, expiresAt, uses, client);
  RS_REQUIRE(token.lease != 0, NOT_FOUND, "object ", gc::toHex(id).c_str(),
             " no longer exists");
  armLeaseTimer();
  return formatToken(token);
}

std::pair<gc::ObjectId, gc::HolderId> ObjectStore::restore(kj::StringPtr text,
                                                           gc::ClientId client) {
  Token token;
  KJ_IF_MAYBE(parsed, parseToken(text)) {
    token = kj::mv(*parsed);
  } else {
    RS_FAIL(MALFORMED,
            "not a refstore token (expected rs2.<32 hex>.<16 hex>.<16 hex>.<32 hex>[@host:port])");
  }
  RS_REQUIRE(token.id.hi == originEpoch, WRONG_STORE, "token was minted by another refstored (",
             kj::hex(token.id.hi), "), this one is ", kj::hex(originEpoch));
  // The lease's own expiry is checked by the redemption, so the answer does not depend on when
  // the lease timer last ran.
  gc::HolderId holder = 0;
  switch (objects.redeemLease(token.lease, token.id, token.secret, nowMillis(), client,
                              &holder)) {
    case gc::RedeemResult::OK:
      armLeaseTimer();
      return {token.id, holder};
    case gc::RedeemResult::EXPIRED:
      RS_FAIL(EXPIRED, "token expired");
    case gc::RedeemResult::NOT_FOUND:
      break;
  }
  RS_REQUIRE(token.expiresUnixSeconds > unixSecondsNow(), EXPIRED, "token expired");
  RS_FAIL(NOT_FOUND, "token unknown, used up, or its object is gone");
}

kj::Promise<void> ObjectStore::expireDueLeases() {
  size_t expired = objects.expireLeases(nowMillis(), kLeaseExpirySlice);
  if (expired > 0) logDebug("expired ", expired, " share token(s)");
  if (expired == kLeaseExpirySlice) {
    // More may be due: go on in a later turn, after whatever else the loop has to do.
    return kj::evalLater([this]() { return expireDueLeases(); });
  }
  return leaseTimerLoop();
}

void ObjectStore::armLeaseTimer() {
  auto next = objects.nextLeaseExpiry();
  KJ_IF_MAYBE(armed, leaseTimerAt) {
    if (next && *armed == *next) return;  // already waiting for exactly that moment
  }
  if (!next && leaseTimerAt == nullptr) return;
  leaseTimerTask = leaseTimerLoop().eagerlyEvaluate(
      [](kj::Exception&& e) { logError("lease timer failed: ", e.getDescription()); });
}

kj::Promise<void> ObjectStore::leaseTimerLoop() {
  // A chain rather than re-arming from inside the callback: replacing leaseTimerTask from its
  // own continuation would destroy the running promise.
  auto next = objects.nextLeaseExpiry();
  if (!next) {
    leaseTimerAt = nullptr;
    return kj::NEVER_DONE;
  }
  leaseTimerAt = *next;
  return timer.atTime(kj::origin<kj::TimePoint>() + *next * kj::MILLISECONDS).then([this]() {
    return expireDueLeases();
  });
}

// --- segments --------------------------------------------------------------------------

proto::Segment::Client ObjectStore::segmentCap(uint32_t segmentId, bool writable,
                                               gc::ClientId clientId) {
  auto& owner = allocatorFor(segmentId);
  if (owner.isDedicated(segmentId)) {
    return kj::heap<SegmentServer>(owner.segment(segmentId), writable, nullptr,
                                   kj::addRef(*client(clientId).segmentCapBudget));
  }
  auto& caps = client(clientId).segmentCaps;
  uint64_t key = uint64_t(segmentId) << 1 | uint64_t(writable);
  KJ_IF_MAYBE(server, caps.find(key)) { return (*server)->self(); }
  // Segment ids are never reused, so a cached capability can never name another segment.
  kj::Function<void(SegmentServer*)> forget = [this, clientId, key](SegmentServer* gone) {
    KJ_IF_MAYBE(info, clients.find(clientId)) {
      KJ_IF_MAYBE(cached, info->segmentCaps.find(key)) {
        if (*cached == gone) info->segmentCaps.erase(key);
      }
    }
  };
  auto server = kj::heap<SegmentServer>(owner.segment(segmentId), writable, kj::mv(forget),
                                       kj::addRef(*client(clientId).segmentCapBudget));
  caps.insert(key, server.get());
  return kj::mv(server);
}

// --- introspection ---------------------------------------------------------------------

void ObjectStore::fillStats(proto::Stats::Builder stats) const {
  auto counts = objects.stats();
  stats.setObjects(counts.objects);
  stats.setBytesUsed(allocator.bytesAllocated());
  stats.setCapacity(allocator.capacity());
  stats.setClients(clients.size());
  stats.setSegments(allocator.segmentCount());
  stats.setSegmentBytes(allocator.segmentBytes());
  stats.setHolders(counts.holders);
  stats.setTokens(counts.leases);
  stats.setPinnedDead(counts.deadPinned);
  stats.setCreating(counts.perState[size_t(gc::ObjectState::CREATING)]);
  stats.setSealed(counts.perState[size_t(gc::ObjectState::SEALED)]);
  stats.setUptimeMs((timer.now() - startedAt) / kj::MILLISECONDS);
  stats.setPutsTotal(putsTotal);
  stats.setReclaimedTotal(reclaimedTotal);
  stats.setLastReclaimMonoUs(lastReclaimMonoUs);
  stats.setBackgroundHashesTotal(backgroundHashesTotal);
  stats.setPromised(counts.perState[size_t(gc::ObjectState::PROMISED)]);
  stats.setFailed(counts.perState[size_t(gc::ObjectState::FAILED)]);
  stats.setNames(counts.names);
  stats.setSpilled(counts.perState[size_t(gc::ObjectState::SPILLED)]);
  fillMemoryStats(stats);
}

kj::Array<const gc::ObjectRecord*> ObjectStore::allRecords() const {
  auto out = kj::heapArrayBuilder<const gc::ObjectRecord*>(objects.size());
  objects.forEach([&](const gc::ObjectRecord& record) { out.add(&record); });
  return out.finish();
}

void ObjectStore::fillListing(capnp::List<proto::ObjectListing>::Builder out,
                              kj::ArrayPtr<const gc::ObjectRecord* const> records) const {
  gc::MonoMillis now = nowMillis();
  for (size_t i = 0; i < records.size(); i++) {
    const gc::ObjectRecord& object = *records[i];
    auto row = out[i];
    fillObjectInfo(row.initInfo(), object);
    constexpr size_t kListed = proto::MAX_LISTED_PER_OBJECT;
    auto holders = objects.holdersOf(object.id, kListed);
    row.setHolderCount(object.holders);
    auto holderList = row.initHolders(holders.size());
    for (size_t h = 0; h < holders.size(); h++) {
      holderList[h].setClientId(holders[h].second);
      KJ_IF_MAYBE(info, clients.find(holders[h].second)) {
        holderList[h].setLabel(info->label);
        holderList[h].setPid(info->pid);
      }
      if (auto held = objects.holderInfo(holders[h].first)) {
        holderList[h].setHeldMs(now - held->since);
      }
    }
    if (auto since = objects.oldestHolderSince(object.id)) row.setOldestHoldMs(now - *since);
    auto names = objects.namesOf(object.id);
    row.setNameCount(names.size());
    if (names.size() > kListed) names.resize(kListed);
    auto nameList = row.initNames(names.size());
    for (size_t n = 0; n < names.size(); n++) nameList.set(n, names[n].c_str());
    auto setIds = [](capnp::List<proto::ObjectId>::Builder out, const std::vector<gc::ObjectId>& ids) {
      for (size_t k = 0; k < ids.size(); k++) {
        out[k].setOrigin(ids[k].hi);
        out[k].setSerial(ids[k].lo);
      }
    };
    auto parents = objects.parentsOf(object.id);
    row.setParentCount(parents.size());
    if (parents.size() > kListed) parents.resize(kListed);
    setIds(row.initParents(parents.size()), parents);
    auto children = objects.childrenOf(object.id);
    if (auto target = objects.aliasTarget(object.id)) children.push_back(*target);
    row.setChildCount(children.size());
    if (children.size() > kListed) children.resize(kListed);
    setIds(row.initChildren(children.size()), children);
    row.setTokens(object.leases);
    auto expiries = objects.leaseExpiriesOf(object.id, kListed);
    auto expiryList = row.initTokenExpiriesMs(expiries.size());
    for (size_t t = 0; t < expiries.size(); t++) {
      expiryList.set(t, expiries[t] > now ? expiries[t] - now : 0);
    }
    row.setPins(object.pins);
    row.setAgeMs(now - object.createdAt);
    row.setDead(object.dead);
  }
}

void fillObjectInfo(proto::ObjectInfo::Builder info, const gc::ObjectRecord& object) {
  static_assert(uint16_t(proto::ObjectState::REMOTE) == uint16_t(gc::ObjectState::REMOTE),
                "gc and wire state orders must match");
  info.initId().setOrigin(object.id.hi);
  info.getId().setSerial(object.id.lo);
  info.setSize(object.size);
  info.initHash().setHigh(object.hashHi);
  info.getHash().setLow(object.hashLo);
  info.setState(static_cast<proto::ObjectState>(object.state));
}

void fillPlacement(proto::Placement::Builder placement, ObjectStore& store, gc::ObjectId id,
                   bool writable, gc::ClientId client) {
  Location where = store.location(store.resolve(id));
  placement.setOrigin(store.origin());
  placement.setSegmentId(where.segmentId);
  placement.setOffset(where.offset);
  placement.setLength(where.length);
  placement.setSegmentSize(where.segmentSize);
  placement.setSegment(store.segmentCap(where.segmentId, writable, client));
  placement.setDedicated(where.dedicated);
}

}  // namespace refstore::server
