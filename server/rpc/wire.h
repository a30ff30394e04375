// The store's plain values in their wire form (schema/refstore.capnp): object info, stats,
// listing rows, placements. The store knows nothing of Cap'n Proto; this is where its figures
// become messages.
#pragma once

#include "schema/refstore.capnp.h"
#include "server/rpc/services.h"
#include "server/store/object_store.h"

namespace refstore::server {

// gc::ObjectState and proto::ObjectState list the states in the same order.
void fillObjectInfo(proto::ObjectInfo::Builder info, const gc::ObjectRecord& record);

void fillStats(proto::Stats::Builder out, const StoreStats& stats);

// Listing rows (Store.list) for `records`, each naming at most maxListedPerObject holders,
// names, parents, children and token expiries, with counts beside them.
void fillListing(capnp::List<proto::ObjectListing>::Builder out, RpcServices& services,
                 kj::ArrayPtr<const gc::ObjectRecord* const> records);

// Where `id`'s bytes are (after resolving aliases), for `client`, with the Segment capability
// carrying the fd (read-only unless `writable`).
void fillPlacement(proto::Placement::Builder placement, RpcServices& services, gc::ObjectId id,
                   bool writable, gc::ClientId client);

}  // namespace refstore::server
