#include "server/rpc/services.h"

namespace refstore::server {

gc::ClientId RpcServices::openConnection(ClientInfo info, bool sharedMemory,
                                         bool writableSharedMemory) {
  gc::ClientId client = store.clients().add(kj::mv(info));
  ConnectionState state;
  state.sharedMemory = sharedMemory;
  state.writableSharedMemory = writableSharedMemory;
  state.segmentCapBudget =
      kj::refcounted<SegmentCapBudget>(store.limits().maxSegmentCapsPerClient);
  state.replyBudget = kj::refcounted<ReplyBudget>(store.limits().maxUnsentBytes);
  connections.insert(client, kj::mv(state));
  return client;
}

void RpcServices::closeConnection(gc::ClientId client) {
  KJ_IF_MAYBE(peers, peerGateway) { peers->connectionClosed(client); }
  connections.erase(client);
  store.clients().remove(client);
}

ConnectionState& RpcServices::connection(gc::ClientId client) {
  return KJ_ASSERT_NONNULL(connections.find(client));
}

kj::Maybe<ConnectionState&> RpcServices::findConnection(gc::ClientId client) {
  return connections.find(client);
}

void RpcServices::requireOpen(gc::ClientId client) {
  if (connections.find(client) != nullptr) return;
  kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "the client's connection closed before "
                                       "its call finished", client));
}

namespace {
// The RpcServices alive on this thread: one per daemon (a few at once in unit tests).
thread_local kj::Vector<const RpcServices*> liveServices;
}  // namespace

RpcServices::RpcServices(ObjectStore& store): store(store) { liveServices.add(this); }

RpcServices::~RpcServices() noexcept(false) {
  for (size_t i = 0; i < liveServices.size(); i++) {
    if (liveServices[i] == this) {
      liveServices[i] = liveServices.back();
      liveServices.removeLast();
      break;
    }
  }
}

bool RpcServices::alive(const RpcServices& services) {
  for (auto* live: liveServices) {
    if (live == &services) return true;
  }
  return false;
}

void RpcServices::releaseHolder(gc::HolderId holder) {
  gc::ObjectTable& holds = store.remoteHolds();
  if (auto peer = holds.remotePeerOf(holder)) {
    if (auto held = holds.holderInfo(holder)) {
      KJ_IF_MAYBE(state, findConnection(held->client)) {
        bool gone = false;
        KJ_IF_MAYBE(ended, state->inputEnded) { gone = (*ended)(); }
        if (gone && !state->holdersDetached) {
          state->holdersDetached = true;
          KJ_IF_MAYBE(peers, peerGateway) { peers->connectionLost(held->client, *peer); }
        }
      }
    }
    if (holds.isDetached(holder)) return;  // kept through the grace period
  }
  store.removeHolder(holder);
}

proto::Segment::Client RpcServices::segmentCap(uint32_t segmentId, bool writable,
                                               gc::ClientId clientId) {
  auto& owner = store.objectMemory().allocatorFor(segmentId);
  ConnectionState& state = connection(clientId);
  if (owner.isDedicated(segmentId)) {
    return kj::heap<SegmentServer>(owner.segment(segmentId), writable, nullptr,
                                   kj::addRef(*state.segmentCapBudget));
  }
  uint64_t key = uint64_t(segmentId) << 1 | uint64_t(writable);
  KJ_IF_MAYBE(server, state.segmentCaps.find(key)) { return (*server)->self(); }
  // Segment ids are never reused, so a cached capability can never name another segment.
  kj::Function<void(SegmentServer*)> forget = [this, clientId, key](SegmentServer* gone) {
    KJ_IF_MAYBE(open, connections.find(clientId)) {
      KJ_IF_MAYBE(cached, open->segmentCaps.find(key)) {
        if (*cached == gone) open->segmentCaps.erase(key);
      }
    }
  };
  auto server = kj::heap<SegmentServer>(owner.segment(segmentId), writable, kj::mv(forget),
                                        kj::addRef(*state.segmentCapBudget));
  state.segmentCaps.insert(key, server.get());
  return kj::mv(server);
}

}  // namespace refstore::server
