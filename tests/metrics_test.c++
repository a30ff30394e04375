// `refstored --metrics`: a live daemon scraped over a real loopback TCP connection. The output
// passes the format checks, every figure agrees with what `Store.stats` reports at the same
// moment (objects by state, memory by location, spilling and restoring, the admission queue),
// request latency is counted per method, and /healthz answers.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "server/metrics/text_format_check.h"
#include "tests/daemon.h"
#include "tests/http_get.h"

using namespace refstore;
using namespace refstore::testing;
using refstore::server::metrics::checkTextFormat;
using refstore::server::metrics::TextFormatReport;

namespace {

// The metrics port a daemon started with `--metrics 127.0.0.1:0` chose (from its log).
int metricsPort(const Daemon& daemon) {
  std::smatch match;
  std::string log = daemon.log();
  REQUIRE_MESSAGE(std::regex_search(log, match, std::regex("metrics on http://\\S+ \\(port (\\d+)\\)")),
                  log);
  return std::stoi(match[1]);
}

TextFormatReport scrape(int port) {
  auto response = httpGet(port, "/metrics");
  REQUIRE(response.status == 200);
  CHECK(response.contentType == "text/plain; version=0.0.4; charset=utf-8");
  auto report = checkTextFormat(response.body);
  CHECK_MESSAGE(report.ok(), report.describe());
  return report;
}

// The figures both sides report, as (metric series, Stats value) pairs.
std::vector<std::pair<std::string, uint64_t>> figures(const Stats& s) {
  return {
      {"refstore_memory_capacity_bytes", s.capacity},
      {"refstore_value_bytes{location=\"shared_memory\"}", s.bytesUsed},
      {"refstore_value_bytes{location=\"file_backed\"}", s.fileBackedBytes},
      {"refstore_value_bytes{location=\"spilled\"}", s.spilledBytes},
      {"refstore_segments", s.segments},
      {"refstore_segment_bytes", s.segmentBytes},
      {"refstore_objects{state=\"creating\"}", s.creating},
      {"refstore_objects{state=\"sealed\"}", s.sealed},
      {"refstore_objects{state=\"promised\"}", s.promised},
      {"refstore_objects{state=\"failed\"}", s.failed},
      {"refstore_objects{state=\"spilled\"}", s.spilled},
      {"refstore_objects_dead_pinned", s.pinnedDead},
      {"refstore_holders", s.holders},
      {"refstore_tokens", s.tokens},
      {"refstore_names", s.names},
      {"refstore_clients", s.clients},
      {"refstore_puts_total", s.putsTotal},
      {"refstore_reclaims_total", s.reclaimedTotal},
      {"refstore_spills_total", s.spillsTotal},
      {"refstore_spilled_bytes_total", s.spilledBytesTotal},
      {"refstore_restores_total", s.restoresTotal},
      {"refstore_restored_bytes_total", s.restoredBytesTotal},
      {"refstore_spill_failures_total", s.spillFailuresTotal},
      {"refstore_spill_files", s.spillFiles},
      {"refstore_admission_queue_length", s.queueLength},
      {"refstore_background_hashes_total", s.backgroundHashesTotal},
  };
}

// Scrapes until a scrape falls between two identical `stats` snapshots (spilling and hashing
// run in the background), then checks every figure against them. Returns that scrape.
TextFormatReport scrapeMatchingStats(Client& client, int port) {
  for (int attempt = 0; attempt < 200; attempt++) {
    Stats before = client.stats();
    auto report = scrape(port);
    Stats after = client.stats();
    if (figures(before) != figures(after)) {
      sleepMillis(20);
      continue;
    }
    for (auto& [series, value]: figures(before)) {
      INFO(series);
      REQUIRE(report.samples.count(series) == 1);
      CHECK(report.samples.at(series) == double(value));
    }
    double uptime = report.samples.at("refstore_uptime_seconds");
    CHECK(uptime >= before.uptimeMs / 1e3);
    CHECK(uptime <= after.uptimeMs / 1e3);
    // Every object is in exactly one state (none is remote on one host).
    CHECK(report.samples.at("refstore_objects{state=\"remote\"}") == 0);
    CHECK(before.creating + before.sealed + before.promised + before.failed + before.spilled ==
          before.objects);
    return report;
  }
  FAIL("the daemon's figures never held still for one scrape");
  return {};
}

double requests(const TextFormatReport& report, const std::string& method) {
  return report.samples.at("refstore_request_duration_seconds_count{method=\"" + method + "\"}");
}

}  // namespace

TEST_CASE("a scrape agrees with stats, passes the format checks, and counts requests") {
  Daemon daemon("64M", {"--metrics", "127.0.0.1:0"});
  int port = metricsPort(daemon);
  Client client = Client::connect(daemon.socket());

  auto empty = scrapeMatchingStats(client, port);
  CHECK(empty.samples.at("refstore_build_info{version=\"0.1\"}") == 1);
  CHECK(empty.samples.at("refstore_clients") == 1);  // this test's connection; scrapes are not

  std::vector<Ref> refs;
  std::vector<uint8_t> bytes(1000, 7);
  for (int i = 0; i < 5; i++) refs.push_back(client.put(bytes.data(), bytes.size()));
  std::string token = refs[0].share(60);
  refs[1].saveAs("metrics/named");
  Promise pending = client.promise();
  for (int i = 0; i < 3; i++) refs[2].view();
  refs.pop_back();  // reclaimed at once

  auto report = scrapeMatchingStats(client, port);
  CHECK(report.samples.at("refstore_objects{state=\"sealed\"}") == 4);
  CHECK(report.samples.at("refstore_objects{state=\"promised\"}") == 1);
  CHECK(report.samples.at("refstore_tokens") == 1);
  CHECK(report.samples.at("refstore_names") == 1);
  CHECK(report.samples.at("refstore_reclaims_total") == 1);
  // Exactly the calls this test made: the client says hello once when it connects.
  CHECK(requests(report, "Store.hello") == 1);
  CHECK(requests(report, "Store.put") == 5);
  CHECK(requests(report, "Ref.view") == 3);
  CHECK(requests(report, "Ref.share") == 1);
  CHECK(requests(report, "Store.promise") == 1);
  CHECK(requests(report, "Ref.saveAs") == 1);
  CHECK(requests(report, "Store.create") == 0);
  CHECK(report.types.at("refstore_request_duration_seconds") == "histogram");
  // A scrape is not a call; a stats call is.
  double statsCalls = requests(scrape(port), "Store.stats");
  CHECK(requests(scrape(port), "Store.stats") == statsCalls);
  client.stats();
  CHECK(requests(scrape(port), "Store.stats") == statsCalls + 1);
}

TEST_CASE("spilling, restoring and file-backed values show where the bytes are") {
  Daemon daemon("16M", {"--metrics", "127.0.0.1:0"});
  int port = metricsPort(daemon);
  Client client = Client::connect(daemon.socket());
  std::vector<uint8_t> value(3 << 20);
  std::vector<Ref> refs;
  for (int i = 0; i < 8; i++) {  // 24 MiB into 16 MiB: the oldest spill
    fillPattern(value.data(), value.size(), i);
    refs.push_back(client.put(value.data(), value.size()));
  }
  REQUIRE(eventually([&]() { return client.stats().spilled > 0; }));
  auto spilled = scrapeMatchingStats(client, port);
  CHECK(spilled.samples.at("refstore_spills_total") > 0);
  CHECK(spilled.samples.at("refstore_value_bytes{location=\"spilled\"}") > 0);
  CHECK(spilled.samples.at("refstore_objects{state=\"spilled\"}") > 0);

  size_t victim = refs.size();  // a spilled value: reading it brings it back
  for (size_t i = 0; i < refs.size() && victim == refs.size(); i++) {
    if (refs[i].info().state == "spilled") victim = i;
  }
  REQUIRE(victim < refs.size());
  View view = refs[victim].view();
  CHECK(checkPattern(view.data(), view.size(), victim));
  auto restored = scrapeMatchingStats(client, port);
  CHECK(restored.samples.at("refstore_restores_total") >= 1);
  CHECK(restored.samples.at("refstore_restored_bytes_total") >= value.size());

  WriteBuffer large = client.create(24 << 20);  // larger than memory: file-backed
  large.data()[0] = 1;
  Ref sealed = large.seal();
  auto fileBacked = scrapeMatchingStats(client, port);
  CHECK(fileBacked.samples.at("refstore_value_bytes{location=\"file_backed\"}") >= 24 << 20);
}

TEST_CASE("requests waiting for memory show in the queue figures and in their latency") {
  Daemon daemon("32M", {"--metrics", "127.0.0.1:0", "--no-spill"});
  int port = metricsPort(daemon);
  Client client = Client::connect(daemon.socket());
  std::vector<uint8_t> value(1 << 20, 1);
  std::vector<Ref> held;  // 28 MiB of 32: an 8 MiB create has to wait
  for (int i = 0; i < 28; i++) held.push_back(client.put(value.data(), value.size()));

  std::thread waiter([&]() {
    Client other = Client::connect(daemon.socket());
    WriteBuffer buffer = other.create(8 << 20, /*timeoutSeconds=*/60);  // waits for memory
    buffer.seal();
  });
  REQUIRE(eventually([&]() { return client.stats().queueLength == 1; }));
  sleepMillis(300);  // the waiter has now waited at least this long
  auto queued = scrapeMatchingStats(client, port);
  CHECK(queued.samples.at("refstore_admission_queue_length") == 1);
  CHECK(queued.samples.at("refstore_admission_oldest_wait_seconds") >= 0.3);

  held.clear();  // memory frees; the waiting create goes through
  waiter.join();
  auto after = scrapeMatchingStats(client, port);
  CHECK(after.samples.at("refstore_admission_queue_length") == 0);
  CHECK(after.samples.at("refstore_admission_oldest_wait_seconds") == 0);
  CHECK(requests(after, "Store.create") == 1);
  // Its reply waited for the memory, so its latency covers the 300 ms above.
  CHECK(after.samples.at("refstore_request_duration_seconds_sum{method=\"Store.create\"}") >= 0.3);
  CHECK(after.samples.at(
            "refstore_request_duration_seconds_bucket{method=\"Store.create\",le=\"0.25\"}") == 0);
}

TEST_CASE("/healthz answers ok while serving; other paths are 404") {
  Daemon daemon("64M", {"--metrics", "127.0.0.1:0"});
  int port = metricsPort(daemon);
  auto health = httpGet(port, "/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  CHECK(httpGet(port, "/").status == 404);
}

TEST_CASE("without --metrics nothing is served, and a bad address is a clear error") {
  Daemon plain("64M");
  CHECK(plain.log().find("metrics") == std::string::npos);

  for (const char* address: {"nowhere", "127.0.0.1:99999"}) {
    auto run = spawn("/bin/sh", {"-c", "server/refstored --socket " + uniqueSocketPath() +
                                           " --no-spill --metrics " + address + " 2>&1"});
    std::string first = run.readLine(), second = run.readLine();
    int status = run.wait();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 0);
    INFO(first, " / ", second);
    CHECK(first.find("--metrics") != std::string::npos);
    CHECK(first.find("Uncaught exception") == std::string::npos);
  }
}
