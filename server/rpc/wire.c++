#include "server/rpc/wire.h"

#include "server/store/store_clock.h"

namespace refstore::server {

void fillStats(proto::Stats::Builder out, const StoreStats& stats) {
  const gc::ObjectTable::Stats& counts = stats.table;
  auto byState = [&](gc::ObjectState state) { return counts.perState[size_t(state)]; };
  out.setObjects(counts.objects);
  out.setBytesUsed(stats.bytesUsed);
  out.setCapacity(stats.capacity);
  out.setClients(stats.clients);
  out.setSegments(stats.segments);
  out.setSegmentBytes(stats.segmentBytes);
  out.setHolders(counts.holders);
  out.setTokens(counts.leases);
  out.setPinnedDead(counts.deadPinned);
  out.setCreating(byState(gc::ObjectState::CREATING));
  out.setSealed(byState(gc::ObjectState::SEALED));
  out.setUptimeMs(stats.uptimeMs);
  out.setPutsTotal(stats.putsTotal);
  out.setReclaimedTotal(stats.reclaimedTotal);
  out.setLastReclaimMonoUs(stats.lastReclaimMonoUs);
  out.setBackgroundHashesTotal(stats.backgroundHashesTotal);
  out.setPromised(byState(gc::ObjectState::PROMISED));
  out.setFailed(byState(gc::ObjectState::FAILED));
  out.setNames(counts.names);
  out.setSpilled(byState(gc::ObjectState::SPILLED));
  out.setSpilledBytes(stats.spilledBytes);
  out.setSpillFiles(stats.spillFiles);
  out.setSpillsTotal(stats.spills.spills);
  out.setSpilledBytesTotal(stats.spills.spilledBytes);
  out.setRestoresTotal(stats.spills.restores);
  out.setRestoredBytesTotal(stats.spills.restoredBytes);
  out.setSpillFailuresTotal(stats.spills.spillFailures);
  out.setFileBackedBytes(stats.fileBackedBytes);
  out.setQueueLength(stats.queueLength);
  out.setPrefetchesWaiting(stats.prefetchesWaiting);
  out.setOldestWaiterMs(stats.oldestWaiterMs);
  out.setProxies(counts.proxies);
  out.setProxyBytes(counts.proxyBytes);
  out.setRemoteHolders(counts.remoteHolders);
  out.setDetachedHolders(counts.detachedHolders);
}

void fillListing(capnp::List<proto::ObjectListing>::Builder out, RpcServices& services,
                 kj::ArrayPtr<const gc::ObjectRecord* const> records) {
  ObjectStore& store = services.store;
  const gc::ObjectTable& objects = store.table();
  gc::MonoMillis now = monoMillis(store.clock());
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
      KJ_IF_MAYBE(info, store.clients().find(holders[h].second)) {
        holderList[h].setLabel(info->label);
        holderList[h].setPid(info->pid);
      }
      if (auto held = objects.holderInfo(holders[h].first)) {
        holderList[h].setHeldMs(now - held->since);
      }
      if (auto peer = objects.remotePeerOf(holders[h].first)) {
        holderList[h].setPeerOrigin(*peer);
        holderList[h].setDetached(objects.isDetached(holders[h].first));
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
    if (object.state == gc::ObjectState::REMOTE) {
      row.setBytesLocal(object.bytesLocal);
      KJ_IF_MAYBE(remote, services.remote()) {
        auto where = remote->whereabouts(object.id);
        row.setOwnerAddress(where.ownerAddress);
        row.setOwnerLost(where.ownerLost);
      }
    }
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

void fillPlacement(proto::Placement::Builder placement, RpcServices& services, gc::ObjectId id,
                   bool writable, gc::ClientId client) {
  ObjectStore& store = services.store;
  Location where = store.location(store.resolve(id));
  placement.setOrigin(store.origin());
  placement.setSegmentId(where.segmentId);
  placement.setOffset(where.offset);
  placement.setLength(where.length);
  placement.setSegmentSize(where.segmentSize);
  placement.setSegment(services.segmentCap(where.segmentId, writable, client));
  placement.setDedicated(where.dedicated);
}

}  // namespace refstore::server
