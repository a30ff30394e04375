// Everything `refstored --metrics HOST:PORT` adds, behind one narrow interface for the daemon's
// wiring: the registry with the store's figures (store_figures.h), per-method request latency
// (call_timing.h) and the HTTP endpoint (http_endpoint.h).
#pragma once

#include "server/metrics/call_timing.h"
#include "server/metrics/http_endpoint.h"
#include "server/metrics/registry.h"
#include "server/metrics/store_figures.h"

namespace refstore::server::metrics {

class MetricsService {
 public:
  // Serves /metrics and /healthz on `receiver` from now until destroyed. `stats` fills a
  // snapshot of the daemon (ObjectStore::fillStats); `version` labels refstore_build_info.
  MetricsService(kj::Timer& timer, kj::Own<kj::ConnectionReceiver> receiver, StatsSource stats,
                 kj::StringPtr version);
  KJ_DISALLOW_COPY(MetricsService);

  // Wraps one client connection's transport so its calls are timed (`inner` must outlive it).
  kj::Own<capnp::MessageStream> timeCalls(capnp::MessageStream& inner) {
    return callTiming->wrap(inner);
  }

  unsigned int getPort() { return receiver->getPort(); }

  // What /healthz answers.
  void setHealth(Health health) { http.setHealth(health); }

  Registry& registry() { return metrics; }

 private:
  Registry metrics;
  kj::Own<CallTiming> callTiming;  // made after the store's figures: they render first
  HttpEndpoint http;
  kj::Own<kj::ConnectionReceiver> receiver;
  kj::Promise<void> serving;
};

}  // namespace refstore::server::metrics
