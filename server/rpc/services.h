// RpcServices: what every capability server shares -- the store, and the state the RPC layer
// keeps per connection (which the store does not know about): whether the connection may
// receive shared-memory placements, the Segment capabilities it holds, and its budgets.
#pragma once

#include <kj/map.h>

#include "schema/refstore.capnp.h"
#include "server/rpc/gateways.h"
#include "server/rpc/reply_budget.h"
#include "server/rpc/segment_server.h"
#include "server/store/object_store.h"

namespace refstore::server {

struct ConnectionState {
  bool sharedMemory = false;          // Unix socket: may receive segment fds
  bool writableSharedMemory = false;  // and the same uid as the daemon
  // The shared segments' Segment capabilities this connection holds, by (segment id << 1 |
  // writable): each is sent with its fd once and then reused (RpcServices::segmentCap).
  // Entries remove themselves when the client releases the capability.
  kj::HashMap<uint64_t, SegmentServer*> segmentCaps;
  // Every Segment capability of this connection, cached or not, counts against this.
  kj::Own<SegmentCapBudget> segmentCapBudget;
  // Large replies (copy-path reads) built for this connection and not yet written to it.
  kj::Own<ReplyBudget> replyBudget;
  // A connection to another daemon (Store.peer made it one): that daemon's origin; Refs handed
  // out on it are remote holders. 0 for clients.
  gc::PeerId peer = 0;
  // Set by whoever owns the connection (server/net, server/peer):
  // whether its incoming messages have ended (the other end closed it, it broke, or it was
  // aborted): the RPC system then releases its capabilities because it is gone;
  kj::Maybe<kj::Function<bool()>> inputEnded;
  // the other end's bootstrap capability (a daemon's Store, on peer connections);
  kj::Maybe<kj::Function<capnp::Capability::Client()>> peerBootstrap;
  // and a way to close the connection (a peer silent past its heartbeat deadline).
  kj::Maybe<kj::Function<void()>> abort;
  // On a peer connection that ended: its remote holders were detached (once).
  bool holdersDetached = false;
};

class RpcServices {
 public:
  explicit RpcServices(ObjectStore& store);
  ~RpcServices() noexcept(false);
  KJ_DISALLOW_COPY(RpcServices);

  // Whether `services` still exists (on this thread). At a daemon's exit Cap'n Proto may destroy
  // capabilities it kept in detached tasks only when the event loop goes, after the daemon's
  // RpcServices and store: a Ref destroyed then has nothing left to release (ASan found a Ref
  // released into a freed RpcServices once in three CI runs).
  static bool alive(const RpcServices& services);

  ObjectStore& store;

  // A new connection: registered with the store's client registry (its id is the holders'
  // ClientId) and given its RPC-side state.
  gc::ClientId openConnection(ClientInfo info, bool sharedMemory, bool writableSharedMemory);
  void closeConnection(gc::ClientId client);
  ConnectionState& connection(gc::ClientId client);  // must be open
  kj::Maybe<ConnectionState&> findConnection(gc::ClientId client);
  // Throws DISCONNECTED if `client`'s connection has closed. A call can outlive its connection:
  // Cap'n Proto 0.9 cancels a call only once the call allows it, and a call pipelined on another
  // call's result keeps that one running until it starts (a restoreView's view keeps its restore
  // going). Whatever takes a holder for a client after waiting checks this first: a holder for a
  // closed connection would never be released (tools/soak, seed 11).
  void requireOpen(gc::ClientId client);
  size_t connectionCount() const { return connections.size(); }

  // A Ref capability let go of its holder (released, or its connection went). A remote
  // holder whose peer connection ended is detached instead (PeerGateway::connectionLost), and
  // waits out the grace period.
  void releaseHolder(gc::HolderId holder);

  // The capability carrying a segment's fd (read-only or read-write) to `client`. A shared
  // segment has one per connection, sent with its fd the first time only: Cap'n Proto reuses
  // the export while the client holds it, and the client keeps it with its mapping, so later
  // placements in that segment cost no fd passing and no Release. A dedicated segment gets a
  // fresh one per placement (its fd always attached): it may be freed and its mapping dropped.
  proto::Segment::Client segmentCap(uint32_t segmentId, bool writable, gc::ClientId client);

  // The doors to other daemons. The modules behind them are built after these services (they
  // use them), and connected here by the daemon once: until then, tokens of other daemons are
  // refused and no connection can become a peer connection.
  void connectPeers(PeerGateway& gateway) { peerGateway = gateway; }
  void connectRemote(RemoteGateway& gateway) { remoteGateway = gateway; }
  kj::Maybe<PeerGateway&> peers() { return peerGateway; }
  kj::Maybe<RemoteGateway&> remote() { return remoteGateway; }

 private:
  kj::Maybe<PeerGateway&> peerGateway;
  kj::Maybe<RemoteGateway&> remoteGateway;
  kj::HashMap<gc::ClientId, ConnectionState> connections;
};

}  // namespace refstore::server
