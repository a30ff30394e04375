#include "server/metrics/registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <kj/debug.h>

namespace refstore::server::metrics {

namespace {

bool isMetricName(kj::StringPtr name) {
  if (name.size() == 0) return false;
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool isLabelName(kj::StringPtr name) {
  if (name.size() == 0 || name.startsWith("__")) return false;
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// HELP text: backslash and newline are escaped.
kj::String escapeHelp(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 1);
  for (char c: text) {
    if (c == '\\') {
      out.addAll(kj::StringPtr("\\\\"));
    } else if (c == '\n') {
      out.addAll(kj::StringPtr("\\n"));
    } else {
      out.add(c);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// Label values: additionally the double quote.
kj::String escapeLabelValue(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 1);
  for (char c: text) {
    if (c == '"') {
      out.addAll(kj::StringPtr("\\\""));
    } else if (c == '\\') {
      out.addAll(kj::StringPtr("\\\\"));
    } else if (c == '\n') {
      out.addAll(kj::StringPtr("\\n"));
    } else {
      out.add(c);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

}  // namespace

kj::String formatValue(double value) {
  if (isnan(value)) return kj::str("NaN");
  if (isinf(value)) return kj::str(value > 0 ? "+Inf" : "-Inf");
  if (value == floor(value) && fabs(value) < 9007199254740992.0) {  // 2^53: exact as an integer
    return kj::str(static_cast<int64_t>(value));
  }
  // The shortest of %.15g and %.17g that reads back as the same double.
  char text[32];
  snprintf(text, sizeof(text), "%.15g", value);
  if (strtod(text, nullptr) != value) snprintf(text, sizeof(text), "%.17g", value);
  return kj::str(text);
}

Histogram::Histogram(kj::ArrayPtr<const double> upperBoundsSeconds)
    : boundsSeconds(kj::heapArray(upperBoundsSeconds)),
      boundsNanos(kj::heapArray<uint64_t>(upperBoundsSeconds.size())),
      counts(kj::heapArray<uint64_t>(upperBoundsSeconds.size() + 1)) {
  for (size_t i = 0; i < upperBoundsSeconds.size(); i++) {
    double bound = upperBoundsSeconds[i];
    KJ_REQUIRE(bound > 0 && !isinf(bound), "histogram bounds must be positive and finite", bound);
    KJ_REQUIRE(i == 0 || bound > upperBoundsSeconds[i - 1],
               "histogram bounds must increase strictly", bound);
    boundsNanos[i] = static_cast<uint64_t>(llround(bound * 1e9));
  }
  for (auto& count: counts) count = 0;
}

uint64_t Histogram::cumulativeCount(size_t bucket) const {
  KJ_REQUIRE(bucket < counts.size(), "no such bucket", bucket);
  uint64_t total = 0;
  for (size_t i = 0; i <= bucket; i++) total += counts[i];
  return total;
}

struct Registry::Series {
  kj::Array<kj::String> labelNames;
  kj::Array<kj::String> labelValues;
  kj::Own<Counter> counter;
  kj::Own<Gauge> gauge;
  kj::Own<Histogram> histogram;

  bool hasLabels(kj::ArrayPtr<const Label> labels) const {
    if (labels.size() != labelNames.size()) return false;
    for (size_t i = 0; i < labels.size(); i++) {
      if (labelNames[i] != labels[i].name || labelValues[i] != labels[i].value) return false;
    }
    return true;
  }

  // `{a="x",b="y"` plus `extra` (a further label, already formatted) and `}`; "" if none.
  kj::String labelText(kj::StringPtr extra = nullptr) const {
    if (labelNames.size() == 0 && extra == nullptr) return kj::str();
    kj::Vector<kj::String> parts;
    for (size_t i = 0; i < labelNames.size(); i++) {
      parts.add(kj::str(labelNames[i], "=\"", escapeLabelValue(labelValues[i]), "\""));
    }
    if (extra != nullptr) parts.add(kj::str(extra));
    return kj::str("{", kj::strArray(parts, ","), "}");
  }
};

struct Registry::Family {
  kj::String name;
  kj::String help;
  Type type;
  kj::Array<double> bounds;  // histograms: every member has the same buckets
  kj::Vector<kj::Own<Series>> members;
};

Registry::Registry() = default;
Registry::~Registry() noexcept(false) = default;

Registry::Series& Registry::series(Type type, kj::StringPtr name, kj::StringPtr help,
                                   kj::ArrayPtr<const Label> labels,
                                   kj::ArrayPtr<const double> bounds) {
  KJ_REQUIRE(isMetricName(name), "invalid metric name", name);
  KJ_REQUIRE(type != Type::COUNTER || name.endsWith("_total"), "a counter's name ends in _total",
             name);
  for (auto& label: labels) {
    KJ_REQUIRE(isLabelName(label.name), "invalid label name", name, label.name);
    KJ_REQUIRE(type != Type::HISTOGRAM || label.name != "le",
               "`le` is reserved for histogram buckets", name);
  }
  Family* family = nullptr;
  for (auto& existing: families) {
    if (existing->name == name) family = existing.get();
  }
  if (family == nullptr) {
    auto fresh = kj::heap<Family>();
    fresh->name = kj::str(name);
    fresh->help = kj::str(help);
    fresh->type = type;
    fresh->bounds = kj::heapArray(bounds);
    family = fresh.get();
    families.add(kj::mv(fresh));
  }
  KJ_REQUIRE(family->type == type && family->help == help, "metric registered twice differently",
             name);
  bool sameBounds = family->bounds.size() == bounds.size();
  for (size_t i = 0; sameBounds && i < bounds.size(); i++) sameBounds = family->bounds[i] == bounds[i];
  KJ_REQUIRE(sameBounds, "a histogram family has one bucket layout", name);
  for (auto& member: family->members) {
    if (member->hasLabels(labels)) return *member;
  }
  auto member = kj::heap<Series>();
  member->labelNames = KJ_MAP(label, labels) { return kj::str(label.name); };
  member->labelValues = KJ_MAP(label, labels) { return kj::str(label.value); };
  switch (type) {
    case Type::COUNTER: member->counter = kj::heap<Counter>(); break;
    case Type::GAUGE: member->gauge = kj::heap<Gauge>(); break;
    case Type::HISTOGRAM: member->histogram = kj::heap<Histogram>(bounds); break;
  }
  auto& result = *member;
  family->members.add(kj::mv(member));
  return result;
}

Counter& Registry::counter(kj::StringPtr name, kj::StringPtr help,
                           kj::ArrayPtr<const Label> labels) {
  return *series(Type::COUNTER, name, help, labels, nullptr).counter;
}

Gauge& Registry::gauge(kj::StringPtr name, kj::StringPtr help, kj::ArrayPtr<const Label> labels) {
  return *series(Type::GAUGE, name, help, labels, nullptr).gauge;
}

Histogram& Registry::histogram(kj::StringPtr name, kj::StringPtr help,
                               kj::ArrayPtr<const double> upperBoundsSeconds,
                               kj::ArrayPtr<const Label> labels) {
  return *series(Type::HISTOGRAM, name, help, labels, upperBoundsSeconds).histogram;
}

void Registry::onCollect(kj::Function<void()> refresh) { collectors.add(kj::mv(refresh)); }

kj::String Registry::render() {
  for (auto& collect: collectors) collect();
  kj::Vector<kj::String> lines;
  for (auto& family: families) {
    static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
    lines.add(kj::str("# HELP ", family->name, " ", escapeHelp(family->help)));
    lines.add(kj::str("# TYPE ", family->name, " ", kTypeNames[size_t(family->type)]));
    for (auto& member: family->members) {
      switch (family->type) {
        case Type::COUNTER:
          lines.add(kj::str(family->name, member->labelText(), " ", member->counter->value()));
          break;
        case Type::GAUGE:
          lines.add(kj::str(family->name, member->labelText(), " ",
                            formatValue(member->gauge->value())));
          break;
        case Type::HISTOGRAM: {
          auto& histogram = *member->histogram;
          auto bounds = histogram.upperBounds();
          for (size_t i = 0; i <= bounds.size(); i++) {
            auto le = i < bounds.size() ? formatValue(bounds[i]) : kj::str("+Inf");
            lines.add(kj::str(family->name, "_bucket", member->labelText(kj::str("le=\"", le, "\"")),
                              " ", histogram.cumulativeCount(i)));
          }
          lines.add(kj::str(family->name, "_sum", member->labelText(), " ",
                            formatValue(histogram.sumSeconds())));
          lines.add(kj::str(family->name, "_count", member->labelText(), " ", histogram.count()));
          break;
        }
      }
    }
  }
  lines.add(kj::str());  // the format ends with a newline
  return kj::strArray(lines, "\n");
}

}  // namespace refstore::server::metrics
