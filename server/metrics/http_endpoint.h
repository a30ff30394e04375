// The HTTP side of `refstored --metrics HOST:PORT`, served by kj-http on the daemon's own event
// loop (a scrape is one short turn of it; nothing runs between scrapes):
//   GET /metrics   the registry in the Prometheus text format
//   GET /healthz   liveness and readiness: 200 "ok" while the daemon serves clients, 503
//                  "starting" or "stopping" otherwise; any answer at all means the loop is alive
// Anything else is 404 (another path) or 405 (another method). HEAD works where GET does.
//
// It exposes counters only: no object data, ids, names or tokens are in the registry.
#pragma once

#include <kj/async-io.h>
#include <kj/compat/http.h>

#include "server/metrics/registry.h"

namespace refstore::server::metrics {

enum class Health { STARTING, READY, STOPPING };

class HttpEndpoint final: private kj::HttpService {
 public:
  HttpEndpoint(kj::Timer& timer, Registry& registry);
  ~HttpEndpoint() noexcept(false);
  KJ_DISALLOW_COPY(HttpEndpoint);

  void setHealth(Health now) { health = now; }

  // Serves connections from `receiver` until the promise is dropped.
  kj::Promise<void> serve(kj::ConnectionReceiver& receiver);

 private:
  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& requestBody,
                            Response& response) override;
  kj::Promise<void> reply(Response& response, unsigned int status, kj::StringPtr statusText,
                          kj::StringPtr contentType, kj::String body);

  Registry& registry;
  Health health = Health::STARTING;
  kj::HttpHeaderTable headerTable;
  kj::HttpServer server;
};

}  // namespace refstore::server::metrics
