#include "server/metrics/http_endpoint.h"

namespace refstore::server::metrics {

namespace {

constexpr const char* kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kPlainText = "text/plain; charset=utf-8";

// The path without a query string ("/metrics?x=1" is "/metrics").
kj::StringPtr pathOf(kj::StringPtr url, kj::String& storage) {
  KJ_IF_MAYBE(question, url.findFirst('?')) {
    storage = kj::str(url.slice(0, *question));
    return storage;
  }
  return url;
}

}  // namespace

HttpEndpoint::HttpEndpoint(kj::Timer& timer, Registry& registry)
    : registry(registry), server(timer, headerTable, *this) {}

HttpEndpoint::~HttpEndpoint() noexcept(false) = default;

kj::Promise<void> HttpEndpoint::serve(kj::ConnectionReceiver& receiver) {
  return server.listenHttp(receiver);
}

kj::Promise<void> HttpEndpoint::reply(Response& response, unsigned int status, kj::StringPtr statusText,
                                      kj::StringPtr contentType, kj::String body) {
  kj::HttpHeaders headers(headerTable);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, contentType);
  auto stream = response.send(status, statusText, headers, body.size());
  auto write = stream->write(body.begin(), body.size());
  return write.attach(kj::mv(stream), kj::mv(body));
}

kj::Promise<void> HttpEndpoint::request(kj::HttpMethod method, kj::StringPtr url,
                                        const kj::HttpHeaders& /*headers*/,
                                        kj::AsyncInputStream& /*requestBody*/,
                                        Response& response) {
  kj::String storage;
  kj::StringPtr path = pathOf(url, storage);
  if (path != "/metrics" && path != "/healthz") {
    return reply(response, 404, "Not Found", kPlainText,
                 kj::str("not found: refstored serves /metrics and /healthz\n"));
  }
  if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD) {
    return reply(response, 405, "Method Not Allowed", kPlainText,
                 kj::str("only GET and HEAD are allowed\n"));
  }
  if (path == "/metrics") {
    return reply(response, 200, "OK", kPrometheusText, registry.render());
  }
  switch (health) {
    case Health::READY: return reply(response, 200, "OK", kPlainText, kj::str("ok\n"));
    case Health::STARTING:
      return reply(response, 503, "Service Unavailable", kPlainText, kj::str("starting\n"));
    case Health::STOPPING:
      return reply(response, 503, "Service Unavailable", kPlainText, kj::str("stopping\n"));
  }
  KJ_UNREACHABLE;
}

}  // namespace refstore::server::metrics
