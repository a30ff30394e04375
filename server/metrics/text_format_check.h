// Test support: checks a Prometheus text exposition (format 0.0.4) against the format's rules and
// the naming conventions refstored promises, and parses its samples so tests can compare values.
//
// Why not promtool: Debian's `prometheus` package (the only one with promtool) is a 22 MB download
// and 96 MB installed, pulls in a dozen JavaScript packages, and its maintainer scripts start a
// Prometheus server on the machine that installs it. These are the rules `promtool check metrics`
// applies plus the format's own, which is what the tests need. (refstored's output was also
// checked once with promtool 2.42 by hand; see the commit that added this file.)
//
// Format: lines are `# HELP name text`, `# TYPE name counter|gauge|histogram|summary|untyped`,
// other `#` comments, or samples `name{label="value",...} value [timestamp]`, and the text ends
// with a newline. A family's HELP and TYPE come at most once each and before its samples; a
// family's samples are contiguous; no two samples name the same series; label names are valid
// and not repeated; values parse as floats (+Inf, -Inf, NaN included). Histograms: `_bucket`
// samples with ascending `le` bounds, non-decreasing cumulative counts, a `+Inf` bucket equal to
// `_count`, and a `_sum`.
//
// Conventions (promtool's lint and ours): every family has HELP and TYPE; names carry
// `requiredPrefix`; counters end in `_total` and are never negative; names are snake_case,
// use base units (no `_ms`, `_milliseconds`, `_kb`, ...); `_total`, `_bucket`, `_sum`,
// `_count` suffixes only where the type calls for them; no label looks like an object id or a
// token (a label named id/object/token, or a value of 32 or more hex digits).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace refstore::server::metrics {

struct TextFormatReport {
  std::vector<std::string> problems;  // empty: the exposition passed every check
  // Every sample by its series, written canonically: `name{a="x",b="y"}` (labels in the order
  // the exposition gave them, values unescaped), or just `name` without labels.
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family name -> TYPE
  std::map<std::string, std::string> helps;  // family name -> HELP text

  bool ok() const { return problems.empty(); }
  std::string describe() const;  // the problems, one per line
};

TextFormatReport checkTextFormat(const std::string& exposition,
                                 const std::string& requiredPrefix = "refstore_");

}  // namespace refstore::server::metrics
