// The daemon-wide figures of `refctl stats`, as Prometheus metrics: memory by location, objects
// by state, holders, tokens, names, clients, spill and restore counts and bytes, the admission
// queue, reclaims, and refstore_build_info.
//
// They are read from a proto::Stats snapshot that `fill` writes (refstored passes
// ObjectStore::fillStats), taken once per scrape: the store's internals can change freely as
// long as Stats keeps its meaning, and the endpoint can never report a figure `stats` does not.
#pragma once

#include <kj/function.h>

#include "schema/refstore.capnp.h"
#include "server/metrics/registry.h"

namespace refstore::server::metrics {

using StatsSource = kj::Function<void(proto::Stats::Builder)>;

// Registers the figures in `registry` and refreshes them from `fill` before every render.
// `version` labels refstore_build_info.
void registerStoreFigures(Registry& registry, StatsSource fill, kj::StringPtr version);

}  // namespace refstore::server::metrics
