// Tests for server/metrics/registry.h: what each kind of metric renders, histogram buckets and
// their edges, escaping, value formatting, and the naming rules enforced at registration.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <math.h>

#include <string>

#include <kj/exception.h>

#include "server/metrics/registry.h"
#include "server/metrics/text_format_check.h"

using namespace refstore::server::metrics;

namespace {

bool throws(kj::Function<void()> body) {
  try {
    body();
  } catch (const kj::Exception&) {
    return true;
  }
  return false;
}

bool contains(const kj::String& text, const char* line) {
  return std::string(text.cStr()).find(line) != std::string::npos;
}

}  // namespace

TEST_CASE("counters and gauges render with HELP, TYPE and their labels") {
  Registry registry;
  registry.counter("refstore_things_total", "Things counted.").add(3);
  Label red[] = {{"colour", "red"}};
  Label blue[] = {{"colour", "blue"}};
  registry.gauge("refstore_level_bytes", "A level.", red).set(1.5);
  registry.gauge("refstore_level_bytes", "A level.", blue).set(1024);
  auto text = registry.render();
  CHECK(std::string(text.cStr()) ==
        "# HELP refstore_things_total Things counted.\n"
        "# TYPE refstore_things_total counter\n"
        "refstore_things_total 3\n"
        "# HELP refstore_level_bytes A level.\n"
        "# TYPE refstore_level_bytes gauge\n"
        "refstore_level_bytes{colour=\"red\"} 1.5\n"
        "refstore_level_bytes{colour=\"blue\"} 1024\n");
  auto report = checkTextFormat(text.cStr());
  CHECK_MESSAGE(report.ok(), report.describe());
}

TEST_CASE("asking again for a metric returns the same one") {
  Registry registry;
  auto& first = registry.counter("refstore_x_total", "X.");
  first.add();
  registry.counter("refstore_x_total", "X.").add();
  CHECK(first.value() == 2);
  CHECK(&registry.counter("refstore_x_total", "X.") == &first);
}

TEST_CASE("histograms count into cumulative buckets; a bound is inclusive") {
  Registry registry;
  const double bounds[] = {0.001, 0.01};
  auto& histogram = registry.histogram("refstore_wait_seconds", "Waits.", bounds);
  histogram.observeNanos(1000000);    // exactly 1 ms: the first bucket (le is <=)
  histogram.observeNanos(1000001);    // just over: the second
  histogram.observeNanos(5000000000);  // 5 s: only +Inf
  CHECK(histogram.cumulativeCount(0) == 1);
  CHECK(histogram.cumulativeCount(1) == 2);
  CHECK(histogram.count() == 3);
  CHECK(histogram.sumSeconds() == doctest::Approx(5.002000001));
  auto text = registry.render();
  CHECK(contains(text, "refstore_wait_seconds_bucket{le=\"0.001\"} 1\n"));
  CHECK(contains(text, "refstore_wait_seconds_bucket{le=\"0.01\"} 2\n"));
  CHECK(contains(text, "refstore_wait_seconds_bucket{le=\"+Inf\"} 3\n"));
  CHECK(contains(text, "refstore_wait_seconds_count 3\n"));
  CHECK(contains(text, "refstore_wait_seconds_sum 5.002000001\n"));
  auto report = checkTextFormat(text.cStr());
  CHECK_MESSAGE(report.ok(), report.describe());
}

TEST_CASE("histogram labels come before le") {
  Registry registry;
  const double bounds[] = {0.5};
  Label method[] = {{"method", "Store.put"}};
  registry.histogram("refstore_request_duration_seconds", "Latency.", bounds, method)
      .observeNanos(1);
  auto text = registry.render();
  CHECK(contains(text, "refstore_request_duration_seconds_bucket{method=\"Store.put\",le=\"0.5\"} 1"));
  CHECK(contains(text, "refstore_request_duration_seconds_count{method=\"Store.put\"} 1"));
}

TEST_CASE("label values and help texts are escaped") {
  Registry registry;
  Label odd[] = {{"path", "a\"b\\c\nd"}};
  registry.gauge("refstore_odd", "Help with \\ and\nnewline.", odd).set(1);
  auto text = registry.render();
  CHECK(contains(text, "# HELP refstore_odd Help with \\\\ and\\nnewline.\n"));
  CHECK(contains(text, "refstore_odd{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
  auto report = checkTextFormat(text.cStr());
  CHECK_MESSAGE(report.ok(), report.describe());
  CHECK(report.samples.at("refstore_odd{path=\"a\"b\\c\nd\"}") == 1);
}

TEST_CASE("values: integers exactly, fractions round-trip, infinities and NaN by name") {
  CHECK(std::string(formatValue(0).cStr()) == "0");
  CHECK(std::string(formatValue(17179869184.0).cStr()) == "17179869184");
  CHECK(std::string(formatValue(-3).cStr()) == "-3");
  CHECK(std::string(formatValue(0.1).cStr()) == "0.1");
  CHECK(std::string(formatValue(2.5e-05).cStr()) == "2.5e-05");
  CHECK(strtod(formatValue(1.0 / 3).cStr(), nullptr) == 1.0 / 3);
  CHECK(std::string(formatValue(INFINITY).cStr()) == "+Inf");
  CHECK(std::string(formatValue(-INFINITY).cStr()) == "-Inf");
  CHECK(std::string(formatValue(NAN).cStr()) == "NaN");
}

TEST_CASE("bad names and inconsistent registrations are refused") {
  Registry registry;
  CHECK(throws([&]() { registry.counter("refstore_things", "A counter without _total."); }));
  CHECK(throws([&]() { registry.gauge("9lives", "Starts with a digit."); }));
  CHECK(throws([&]() { registry.gauge("refstore-dash", "A dash."); }));
  Label reserved[] = {{"__name", "x"}};
  CHECK(throws([&]() { registry.gauge("refstore_ok", "Reserved label.", reserved); }));
  const double bounds[] = {1};
  Label le[] = {{"le", "1"}};
  CHECK(throws([&]() { registry.histogram("refstore_h_seconds", "le label.", bounds, le); }));
  registry.gauge("refstore_g", "A gauge.");
  CHECK(throws([&]() { registry.counter("refstore_g", "Now a counter."); }));
  CHECK(throws([&]() { registry.gauge("refstore_g", "Other help."); }));
  const double descending[] = {2, 1};
  CHECK(throws([&]() { registry.histogram("refstore_d_seconds", "Descending.", descending); }));
  registry.histogram("refstore_e_seconds", "E.", bounds);
  const double other[] = {1, 2};
  CHECK(throws([&]() { registry.histogram("refstore_e_seconds", "E.", other); }));
}

TEST_CASE("collectors run before every render, in order") {
  Registry registry;
  auto& gauge = registry.gauge("refstore_refreshed", "Refreshed.");
  int renders = 0;
  registry.onCollect([&]() { gauge.set(++renders); });
  registry.onCollect([&]() { gauge.set(gauge.value() * 10); });
  CHECK(contains(registry.render(), "refstore_refreshed 10\n"));
  CHECK(contains(registry.render(), "refstore_refreshed 20\n"));
}
