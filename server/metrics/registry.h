// A small metrics registry: counters, gauges and histograms with fixed buckets, rendered in the
// Prometheus text exposition format (version 0.0.4) for `refstored --metrics`.
//
// Why our own: Debian has no Prometheus client library for C++, and what refstored needs is
// small. Everything runs on the daemon's event-loop thread, so nothing here is atomic or locked.
//
// Metrics of one name form a family that shares a HELP text and a TYPE; a family's members
// differ by their labels. The registry checks Prometheus' naming rules when a metric is
// registered (a bad name is a programming error, caught by the unit test, not at scrape time):
// names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and never start with
// "__", counters end in `_total`, and `le` is reserved for histogram buckets.
#pragma once

#include <kj/function.h>
#include <kj/string.h>
#include <kj/vector.h>

#include <stdint.h>

namespace refstore::server::metrics {

struct Label {
  kj::StringPtr name;
  kj::StringPtr value;  // any UTF-8; escaped on output
};

// Only ever goes up: events counted since start.
class Counter {
 public:
  void add(uint64_t n = 1) { count += n; }
  // For a counter mirrored from a cumulative figure kept elsewhere (the store's Stats).
  void set(uint64_t total) { count = total; }
  uint64_t value() const { return count; }

 private:
  uint64_t count = 0;
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double newValue) { current = newValue; }
  double value() const { return current; }

 private:
  double current = 0;
};

// Observations counted into fixed buckets (by upper bound), with their sum and count. Kept in
// integer nanoseconds: observe() is on the request path (a few comparisons and additions).
class Histogram {
 public:
  // `upperBoundsSeconds`: strictly increasing and positive; +Inf is implicit.
  explicit Histogram(kj::ArrayPtr<const double> upperBoundsSeconds);

  void observeNanos(uint64_t nanos) {
    size_t bucket = 0;
    while (bucket < boundsNanos.size() && nanos > boundsNanos[bucket]) bucket++;
    counts[bucket]++;
    sumNanos += nanos;
  }

  kj::ArrayPtr<const double> upperBounds() const { return boundsSeconds; }
  // Observations <= upperBounds()[i] (cumulative, as Prometheus reports them); the one past the
  // end is the +Inf bucket, i.e. count().
  uint64_t cumulativeCount(size_t bucket) const;
  uint64_t count() const { return cumulativeCount(boundsNanos.size()); }
  double sumSeconds() const { return sumNanos / 1e9; }

 private:
  kj::Array<double> boundsSeconds;
  kj::Array<uint64_t> boundsNanos;
  kj::Array<uint64_t> counts;  // per bucket, not cumulative; one more than bounds (+Inf)
  uint64_t sumNanos = 0;
};

class Registry {
 public:
  Registry();
  ~Registry() noexcept(false);
  KJ_DISALLOW_COPY(Registry);

  // The metric of this name and labels, registered on first use (the same reference after).
  // A name registered with another type, help text or bucket layout is a programming error.
  Counter& counter(kj::StringPtr name, kj::StringPtr help,
                   kj::ArrayPtr<const Label> labels = nullptr);
  Gauge& gauge(kj::StringPtr name, kj::StringPtr help,
               kj::ArrayPtr<const Label> labels = nullptr);
  Histogram& histogram(kj::StringPtr name, kj::StringPtr help,
                       kj::ArrayPtr<const double> upperBoundsSeconds,
                       kj::ArrayPtr<const Label> labels = nullptr);

  // Runs before every render(), in the order added: refreshes figures mirrored from elsewhere.
  void onCollect(kj::Function<void()> refresh);

  // Every family in registration order: `# HELP`, `# TYPE`, then one line per sample.
  kj::String render();

 private:
  struct Family;
  struct Series;
  enum class Type { COUNTER, GAUGE, HISTOGRAM };
  Series& series(Type type, kj::StringPtr name, kj::StringPtr help,
                 kj::ArrayPtr<const Label> labels, kj::ArrayPtr<const double> bounds);

  kj::Vector<kj::Own<Family>> families;
  kj::Vector<kj::Function<void()>> collectors;
};

// Formats a sample value as Prometheus expects: integers without a fraction, "+Inf", "NaN".
kj::String formatValue(double value);

}  // namespace refstore::server::metrics
