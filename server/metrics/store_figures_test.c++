// Tests for server/metrics/store_figures.h: each Stats field lands in its metric, the snapshot is
// taken at every render, and the output passes the format checks.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "server/metrics/store_figures.h"
#include "server/metrics/text_format_check.h"

using namespace refstore;
using namespace refstore::server::metrics;

namespace {

// Distinct values per field, so a figure read from the wrong field shows.
void fillDistinct(proto::Stats::Builder stats, uint64_t bump) {
  stats.setObjects(100 + bump);
  stats.setBytesUsed(1001);
  stats.setCapacity(1 << 30);
  stats.setClients(3);
  stats.setSegments(4);
  stats.setSegmentBytes(5 << 20);
  stats.setHolders(6);
  stats.setTokens(7);
  stats.setPinnedDead(8);
  stats.setCreating(9);
  stats.setSealed(50 + bump);
  stats.setUptimeMs(12345);
  stats.setPutsTotal(11 + bump);
  stats.setReclaimedTotal(12);
  stats.setPromised(13);
  stats.setFailed(14);
  stats.setNames(15);
  stats.setSpilled(10);
  stats.setSpilledBytes(17);
  stats.setSpillFiles(18);
  stats.setSpillsTotal(19);
  stats.setSpilledBytesTotal(20);
  stats.setRestoresTotal(21);
  stats.setRestoredBytesTotal(22);
  stats.setSpillFailuresTotal(23);
  stats.setFileBackedBytes(24);
  stats.setQueueLength(25);
  stats.setOldestWaiterMs(2500);
  stats.setBackgroundHashesTotal(27);
}

}  // namespace

TEST_CASE("every figure of Stats is exported under its name") {
  Registry registry;
  uint64_t bump = 0;
  registerStoreFigures(registry, [&](proto::Stats::Builder stats) { fillDistinct(stats, bump); },
                       "0.1");
  auto report = checkTextFormat(registry.render().cStr());
  REQUIRE_MESSAGE(report.ok(), report.describe());
  auto& s = report.samples;
  CHECK(s.at("refstore_build_info{version=\"0.1\"}") == 1);
  CHECK(s.at("refstore_uptime_seconds") == 12.345);
  CHECK(s.at("refstore_memory_capacity_bytes") == 1 << 30);
  CHECK(s.at("refstore_value_bytes{location=\"shared_memory\"}") == 1001);
  CHECK(s.at("refstore_value_bytes{location=\"file_backed\"}") == 24);
  CHECK(s.at("refstore_value_bytes{location=\"spilled\"}") == 17);
  CHECK(s.at("refstore_segments") == 4);
  CHECK(s.at("refstore_segment_bytes") == 5 << 20);
  CHECK(s.at("refstore_objects{state=\"creating\"}") == 9);
  CHECK(s.at("refstore_objects{state=\"sealed\"}") == 50);
  CHECK(s.at("refstore_objects{state=\"promised\"}") == 13);
  CHECK(s.at("refstore_objects{state=\"failed\"}") == 14);
  CHECK(s.at("refstore_objects{state=\"spilled\"}") == 10);
  CHECK(s.at("refstore_objects{state=\"remote\"}") == 100 - (9 + 50 + 13 + 14 + 10));
  CHECK(s.at("refstore_objects_dead_pinned") == 8);
  CHECK(s.at("refstore_holders") == 6);
  CHECK(s.at("refstore_tokens") == 7);
  CHECK(s.at("refstore_names") == 15);
  CHECK(s.at("refstore_clients") == 3);
  CHECK(s.at("refstore_puts_total") == 11);
  CHECK(s.at("refstore_reclaims_total") == 12);
  CHECK(s.at("refstore_spills_total") == 19);
  CHECK(s.at("refstore_spilled_bytes_total") == 20);
  CHECK(s.at("refstore_restores_total") == 21);
  CHECK(s.at("refstore_restored_bytes_total") == 22);
  CHECK(s.at("refstore_spill_failures_total") == 23);
  CHECK(s.at("refstore_spill_files") == 18);
  CHECK(s.at("refstore_admission_queue_length") == 25);
  CHECK(s.at("refstore_admission_oldest_wait_seconds") == 2.5);
  CHECK(s.at("refstore_background_hashes_total") == 27);
  CHECK(report.types.at("refstore_puts_total") == "counter");
  CHECK(report.types.at("refstore_objects") == "gauge");

  // Every scrape takes a fresh snapshot.
  bump = 5;
  auto again = checkTextFormat(registry.render().cStr());
  CHECK(again.samples.at("refstore_puts_total") == 16);
  CHECK(again.samples.at("refstore_objects{state=\"sealed\"}") == 55);
}
