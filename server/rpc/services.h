// RpcServices: what every capability server shares -- the store, and the state the RPC layer
// keeps per connection (which the store does not know about): whether the connection may
// receive shared-memory placements, the Segment capabilities it holds, and its budgets.
#pragma once

#include <kj/map.h>

#include "schema/refstore.capnp.h"
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
};

class RpcServices {
 public:
  explicit RpcServices(ObjectStore& store): store(store) {}
  KJ_DISALLOW_COPY(RpcServices);

  ObjectStore& store;

  // A new connection: registered with the store's client registry (its id is the holders'
  // ClientId) and given its RPC-side state.
  gc::ClientId openConnection(ClientInfo info, bool sharedMemory, bool writableSharedMemory);
  void closeConnection(gc::ClientId client);
  ConnectionState& connection(gc::ClientId client);  // must be open
  size_t connectionCount() const { return connections.size(); }

  // The capability carrying a segment's fd (read-only or read-write) to `client`. A shared
  // segment has one per connection, sent with its fd the first time only: Cap'n Proto reuses
  // the export while the client holds it, and the client keeps it with its mapping, so later
  // placements in that segment cost no fd passing and no Release. A dedicated segment gets a
  // fresh one per placement (its fd always attached): it may be freed and its mapping dropped.
  proto::Segment::Client segmentCap(uint32_t segmentId, bool writable, gc::ClientId client);

 private:
  kj::HashMap<gc::ClientId, ConnectionState> connections;
};

}  // namespace refstore::server
