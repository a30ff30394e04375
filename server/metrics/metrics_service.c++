#include "server/metrics/metrics_service.h"

namespace refstore::server::metrics {

MetricsService::MetricsService(kj::Timer& timer, StatsSource stats, kj::StringPtr version)
    : http(timer, metrics) {
  registerStoreFigures(metrics, kj::mv(stats), version);
  callTiming = kj::heap<CallTiming>(metrics);
}

}  // namespace refstore::server::metrics
