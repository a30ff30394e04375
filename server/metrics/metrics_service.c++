#include "server/metrics/metrics_service.h"

#include "server/log.h"

namespace refstore::server::metrics {

MetricsService::MetricsService(kj::Timer& timer, kj::Own<kj::ConnectionReceiver> receiverParam,
                               StatsSource stats, kj::StringPtr version)
    : http(timer, metrics),
      receiver(kj::mv(receiverParam)),
      serving(http.serve(*receiver).eagerlyEvaluate([](kj::Exception&& e) {
        // Only accept() failing ends listenHttp (a connection's errors end that connection).
        logError("metrics endpoint failed: ", e.getDescription());
      })) {
  registerStoreFigures(metrics, kj::mv(stats), version);
  callTiming = kj::heap<CallTiming>(metrics);
}

}  // namespace refstore::server::metrics
