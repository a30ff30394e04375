// Tests for server/metrics/text_format_check.h: the checker accepts a valid exposition and finds
// each kind of mistake it claims to find (a checker that passes everything proves nothing).

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>

#include "server/metrics/text_format_check.h"

using refstore::server::metrics::checkTextFormat;

namespace {

const std::string kValid =
    "# HELP refstore_up_total Ups.\n"
    "# TYPE refstore_up_total counter\n"
    "refstore_up_total 3\n"
    "# HELP refstore_memory_bytes Memory.\n"
    "# TYPE refstore_memory_bytes gauge\n"
    "refstore_memory_bytes{location=\"shared_memory\"} 1.5e+09\n"
    "refstore_memory_bytes{location=\"spilled\"} 0\n"
    "# HELP refstore_wait_seconds Waits.\n"
    "# TYPE refstore_wait_seconds histogram\n"
    "refstore_wait_seconds_bucket{method=\"Store.put\",le=\"0.1\"} 1\n"
    "refstore_wait_seconds_bucket{method=\"Store.put\",le=\"+Inf\"} 2\n"
    "refstore_wait_seconds_sum{method=\"Store.put\"} 3.5\n"
    "refstore_wait_seconds_count{method=\"Store.put\"} 2\n";

// The problems found in `text`, one string (empty if none).
std::string problems(const std::string& text) { return checkTextFormat(text).describe(); }

bool finds(const std::string& text, const std::string& what) {
  return problems(text).find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("a valid exposition passes and its samples are parsed") {
  auto report = checkTextFormat(kValid);
  CHECK_MESSAGE(report.ok(), report.describe());
  CHECK(report.samples.at("refstore_up_total") == 3);
  CHECK(report.samples.at("refstore_memory_bytes{location=\"shared_memory\"}") == 1.5e9);
  CHECK(report.samples.at("refstore_wait_seconds_count{method=\"Store.put\"}") == 2);
  CHECK(report.types.at("refstore_wait_seconds") == "histogram");
  CHECK(report.helps.at("refstore_up_total") == "Ups.");
}

TEST_CASE("format errors are found") {
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a 1", "newline"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a one\n", "invalid value"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a{x=\"1} 1\n",
              "unterminated"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a{x=\"1\",x=\"2\"} 1\n",
              "repeated"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a{x=\"\\t\"} 1\n",
              "invalid escape"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a 1\nrefstore_a 2\n",
              "duplicate series"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\n# TYPE refstore_a gauge\n"
              "refstore_a 1\n",
              "second TYPE"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a wobbly\nrefstore_a 1\n", "unknown type"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a{x=\"1\"} 1\n"
              "# HELP refstore_b B.\n# TYPE refstore_b gauge\nrefstore_b 1\n"
              "refstore_a{x=\"2\"} 1\n",
              "not contiguous"));
  CHECK(finds("# HELP refstore_a A.\nrefstore_a 1\n# TYPE refstore_a gauge\n", "after its samples"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a gauge\nrefstore_a 1 \n", "trailing space"));
}

TEST_CASE("histogram rules are enforced") {
  const std::string head = "# HELP refstore_h_seconds H.\n# TYPE refstore_h_seconds histogram\n";
  CHECK(finds(head + "refstore_h_seconds_bucket{le=\"1\"} 2\nrefstore_h_seconds_bucket{le=\"0.5\"} 2\n"
                     "refstore_h_seconds_bucket{le=\"+Inf\"} 2\nrefstore_h_seconds_sum 1\n"
                     "refstore_h_seconds_count 2\n",
              "ascend"));
  CHECK(finds(head + "refstore_h_seconds_bucket{le=\"1\"} 3\nrefstore_h_seconds_bucket{le=\"+Inf\"} 2\n"
                     "refstore_h_seconds_sum 1\nrefstore_h_seconds_count 2\n",
              "must not decrease"));
  CHECK(finds(head + "refstore_h_seconds_bucket{le=\"1\"} 2\nrefstore_h_seconds_sum 1\n"
                     "refstore_h_seconds_count 2\n",
              "no +Inf bucket"));
  CHECK(finds(head + "refstore_h_seconds_bucket{le=\"+Inf\"} 2\nrefstore_h_seconds_sum 1\n"
                     "refstore_h_seconds_count 3\n",
              "differs from _count"));
  CHECK(finds(head + "refstore_h_seconds_bucket{le=\"+Inf\"} 2\nrefstore_h_seconds_count 2\n",
              "no _sum"));
  CHECK(finds(head + "refstore_h_seconds_bucket 2\nrefstore_h_seconds_sum 1\n"
                     "refstore_h_seconds_count 2\n",
              "numeric le"));
}

TEST_CASE("naming conventions are enforced") {
  CHECK(finds("# HELP refstore_a_total A.\n# TYPE refstore_a_total gauge\nrefstore_a_total 1\n",
              "_total is for counters"));
  CHECK(finds("# HELP refstore_a A.\n# TYPE refstore_a counter\nrefstore_a 1\n", "ends in _total"));
  CHECK(finds("# HELP refstore_a_total A.\n# TYPE refstore_a_total counter\nrefstore_a_total -1\n",
              "negative counter"));
  CHECK(finds("# TYPE refstore_a gauge\nrefstore_a 1\n", "no HELP"));
  CHECK(finds("# HELP refstore_a A.\nrefstore_a 1\n", "no TYPE"));
  CHECK(finds("# HELP other_a A.\n# TYPE other_a gauge\nother_a 1\n", "lacks the prefix"));
  CHECK(finds("# HELP refstore_wait_ms A.\n# TYPE refstore_wait_ms gauge\nrefstore_wait_ms 1\n",
              "non-base unit"));
  CHECK(finds("# HELP refstore_size_kb A.\n# TYPE refstore_size_kb gauge\nrefstore_size_kb 1\n",
              "non-base unit"));
  CHECK(finds("# HELP refstore_bigThing A.\n# TYPE refstore_bigThing gauge\nrefstore_bigThing 1\n",
              "snake_case"));
  CHECK(finds("# HELP refstore_a_count A.\n# TYPE refstore_a_count gauge\nrefstore_a_count 1\n",
              "suffix is for histograms"));
}

TEST_CASE("labels that look like object ids or tokens are refused") {
  const std::string head = "# HELP refstore_a A.\n# TYPE refstore_a gauge\n";
  CHECK(finds(head + "refstore_a{object=\"x\"} 1\n", "object id or token"));
  CHECK(finds(head + "refstore_a{owner=\"9f86d081884c7d659a2feaa0c55ad015\"} 1\n",
              "object id or token"));
  CHECK(finds(head + "refstore_a{t=\"rs1.abc\"} 1\n", "object id or token"));
  CHECK(problems(head + "refstore_a{method=\"Store.put\"} 1\n").empty());
}
