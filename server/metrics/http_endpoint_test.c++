// Tests for server/metrics/http_endpoint.h over a real loopback TCP connection: /metrics serves
// the registry, /healthz follows the health state, other paths and methods are refused.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <kj/async-io.h>

#include <string>

#include "server/metrics/http_endpoint.h"
#include "server/metrics/text_format_check.h"

using namespace refstore::server::metrics;

namespace {

struct Fixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Registry registry;
  HttpEndpoint endpoint{io.provider->getTimer(), registry};
  kj::Own<kj::ConnectionReceiver> receiver =
      io.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io.waitScope)->listen();
  kj::Promise<void> serving = endpoint.serve(*receiver).eagerlyEvaluate(nullptr);

  struct Reply {
    unsigned int status;
    std::string contentType;
    std::string body;
  };

  // One request through kj-http's client (it reads exactly Content-Length bytes: the server
  // keeps connections open for the next request, as Prometheus' scraper expects).
  Reply exchange(kj::HttpMethod method, kj::StringPtr path) {
    auto address = io.provider->getNetwork()
                       .parseAddress("127.0.0.1", receiver->getPort())
                       .wait(io.waitScope);
    kj::HttpHeaderTable table;
    auto client = kj::newHttpClient(io.provider->getTimer(), table, *address);
    kj::HttpHeaders headers(table);
    auto response = client->request(method, path, headers).response.wait(io.waitScope);
    Reply reply{response.statusCode, "", response.body->readAllText().wait(io.waitScope).cStr()};
    KJ_IF_MAYBE(type, response.headers->get(kj::HttpHeaderId::CONTENT_TYPE)) {
      reply.contentType = type->cStr();
    }
    return reply;
  }
};

}  // namespace

TEST_CASE("GET /metrics serves the registry in the Prometheus text format") {
  Fixture f;
  f.registry.counter("refstore_scraped_total", "Scrapes.").add(41);
  int renders = 0;
  f.registry.onCollect([&]() { renders++; });
  auto response = f.exchange(kj::HttpMethod::GET, "/metrics");
  CHECK(response.status == 200);
  CHECK(response.contentType == "text/plain; version=0.0.4; charset=utf-8");
  auto report = checkTextFormat(response.body);
  CHECK_MESSAGE(report.ok(), report.describe());
  CHECK(report.samples.at("refstore_scraped_total") == 41);
  CHECK(renders == 1);
  auto head = f.exchange(kj::HttpMethod::HEAD, "/metrics");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(f.exchange(kj::HttpMethod::GET, "/metrics?format=text").status == 200);
}

TEST_CASE("/healthz answers 503 until ready, 200 while ready, 503 when stopping") {
  Fixture f;
  auto starting = f.exchange(kj::HttpMethod::GET, "/healthz");
  CHECK(starting.status == 503);
  CHECK(starting.body == "starting\n");
  f.endpoint.setHealth(Health::READY);
  auto ready = f.exchange(kj::HttpMethod::GET, "/healthz");
  CHECK(ready.status == 200);
  CHECK(ready.body == "ok\n");
  f.endpoint.setHealth(Health::STOPPING);
  auto stopping = f.exchange(kj::HttpMethod::GET, "/healthz");
  CHECK(stopping.status == 503);
  CHECK(stopping.body == "stopping\n");
}

TEST_CASE("other paths are 404 and other methods 405") {
  Fixture f;
  CHECK(f.exchange(kj::HttpMethod::GET, "/").status == 404);
  CHECK(f.exchange(kj::HttpMethod::GET, "/metrics/extra").status == 404);
  CHECK(f.exchange(kj::HttpMethod::POST, "/metrics").status == 405);
  CHECK(f.exchange(kj::HttpMethod::DELETE, "/healthz").status == 405);
}
