#include "server/metrics/text_format_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <set>

namespace refstore::server::metrics {

namespace {

bool isNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

bool isMetricName(const std::string& name) {
  if (name.empty() || !(isNameStart(name[0]) || name[0] == ':')) return false;
  for (char c: name) {
    if (!(isNameStart(c) || isDigit(c) || c == ':')) return false;
  }
  return true;
}

bool endsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool parseFloat(const std::string& text, double& out) {
  if (text == "+Inf" || text == "Inf") {
    out = INFINITY;
    return true;
  }
  if (text == "-Inf") {
    out = -INFINITY;
    return true;
  }
  if (text == "NaN") {
    out = NAN;
    return true;
  }
  if (text.empty()) return false;
  char* end = nullptr;
  out = strtod(text.c_str(), &end);
  // strtod also takes "inf", "nan" and hex floats, which Prometheus' parser does not.
  if (*end != '\0') return false;
  for (char c: text) {
    if (!(isDigit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return false;
  }
  return true;
}

struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

// Parses `name{a="x",...} value [timestamp]`; returns "" or what is wrong.
std::string parseSample(const std::string& line, Sample& sample) {
  size_t at = 0;
  while (at < line.size() && line[at] != '{' && line[at] != ' ') at++;
  sample.name = line.substr(0, at);
  if (!isMetricName(sample.name)) return "invalid metric name '" + sample.name + "'";
  if (at < line.size() && line[at] == '{') {
    at++;
    std::set<std::string> seen;
    while (at < line.size() && line[at] != '}') {
      size_t start = at;
      while (at < line.size() && (isNameStart(line[at]) || isDigit(line[at]))) at++;
      std::string labelName = line.substr(start, at - start);
      if (labelName.empty() || isDigit(labelName[0])) return "invalid label name";
      if (labelName.compare(0, 2, "__") == 0) return "label name '" + labelName + "' is reserved";
      if (!seen.insert(labelName).second) return "label '" + labelName + "' repeated";
      if (line.compare(at, 2, "=\"") != 0) return "expected =\" after label " + labelName;
      at += 2;
      std::string value;
      while (at < line.size() && line[at] != '"') {
        if (line[at] == '\\') {
          if (at + 1 >= line.size()) return "unfinished escape in label " + labelName;
          char escaped = line[at + 1];
          if (escaped == 'n') {
            value += '\n';
          } else if (escaped == '\\' || escaped == '"') {
            value += escaped;
          } else {
            return "invalid escape in label " + labelName;
          }
          at += 2;
        } else {
          value += line[at++];
        }
      }
      if (at >= line.size()) return "unterminated value of label " + labelName;
      at++;  // the closing quote
      sample.labels.emplace_back(labelName, value);
      if (at < line.size() && line[at] == ',') at++;
    }
    if (at >= line.size()) return "unterminated label set";
    at++;  // '}'
  }
  if (at >= line.size() || line[at] != ' ') return "expected a space before the value";
  at++;
  size_t space = line.find(' ', at);
  std::string valueText = line.substr(at, space == std::string::npos ? std::string::npos : space - at);
  if (!parseFloat(valueText, sample.value)) return "invalid value '" + valueText + "'";
  if (space != std::string::npos) {
    std::string timestamp = line.substr(space + 1);
    if (timestamp.empty()) return "trailing space";
    for (char c: timestamp) {
      if (!(isDigit(c) || c == '-')) return "invalid timestamp '" + timestamp + "'";
    }
  }
  return "";
}

std::string seriesKey(const Sample& sample) {
  std::string key = sample.name;
  if (sample.labels.empty()) return key;
  key += '{';
  for (size_t i = 0; i < sample.labels.size(); i++) {
    if (i) key += ',';
    key += sample.labels[i].first + "=\"" + sample.labels[i].second + "\"";
  }
  return key + "}";
}

// The family a sample belongs to, given the families' types: histograms own their _bucket,
// _sum and _count series.
std::string familyOf(const std::string& sampleName,
                     const std::map<std::string, std::string>& types) {
  for (const char* suffix: {"_bucket", "_sum", "_count"}) {
    if (endsWith(sampleName, suffix)) {
      std::string base = sampleName.substr(0, sampleName.size() - strlen(suffix));
      auto type = types.find(base);
      if (type != types.end() && (type->second == "histogram" || type->second == "summary")) {
        return base;
      }
    }
  }
  return sampleName;
}

bool looksLikeObjectId(const std::string& value) {
  size_t hexRun = 0, longest = 0;
  for (char c: value) {
    bool hex = isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    hexRun = hex ? hexRun + 1 : 0;
    if (hexRun > longest) longest = hexRun;
  }
  return longest >= 32 || value.compare(0, 4, "rs1.") == 0;
}

// promtool's lint: camelCase names and abbreviated or non-base units.
std::string namingProblem(const std::string& name) {
  for (char c: name) {
    if (c >= 'A' && c <= 'Z') return "is not snake_case";
  }
  static const char* const kNonBaseUnits[] = {
      "_ms",           "_msec",      "_millis",        "_milliseconds", "_us",
      "_usec",         "_micros",    "_microseconds",  "_ns",           "_nanoseconds",
      "_sec",          "_secs",      "_minutes",       "_hours",        "_kb",
      "_kib",          "_mb",        "_mib",           "_gb",           "_gib",
      "_kilobytes",    "_megabytes", "_gigabytes",     "_percent",
  };
  std::string padded = name + "_";
  for (const char* unit: kNonBaseUnits) {
    if (padded.find(std::string(unit) + "_") != std::string::npos) {
      return std::string("uses a non-base unit (") + (unit + 1) + ")";
    }
  }
  return "";
}

struct HistogramState {
  double lastBound = -INFINITY;
  double lastCount = 0;
  bool sawInf = false;
  double infCount = 0;
  bool sawSum = false;
  bool sawCount = false;
  double count = 0;
};

}  // namespace

std::string TextFormatReport::describe() const {
  std::string out;
  for (auto& problem: problems) out += problem + "\n";
  return out;
}

TextFormatReport checkTextFormat(const std::string& exposition,
                                 const std::string& requiredPrefix) {
  TextFormatReport report;
  auto problem = [&](size_t lineNumber, const std::string& what) {
    report.problems.push_back("line " + std::to_string(lineNumber) + ": " + what);
  };
  if (exposition.empty() || exposition.back() != '\n') {
    report.problems.push_back("the exposition does not end with a newline");
  }

  std::set<std::string> finishedFamilies;  // families whose samples are over
  std::set<std::string> sampledFamilies;
  std::set<std::string> series;
  std::map<std::string, HistogramState> histogramSeries;  // by series without le
  std::string currentFamily;

  size_t lineNumber = 0;
  size_t start = 0;
  while (start < exposition.size()) {
    size_t end = exposition.find('\n', start);
    if (end == std::string::npos) end = exposition.size();
    std::string line = exposition.substr(start, end - start);
    start = end + 1;
    lineNumber++;
    if (line.empty()) continue;

    if (line[0] == '#') {
      bool help = line.compare(0, 7, "# HELP ") == 0, type = line.compare(0, 7, "# TYPE ") == 0;
      if (!help && !type) continue;  // an ordinary comment
      std::string rest = line.substr(7);
      size_t space = rest.find(' ');
      std::string name = rest.substr(0, space);
      std::string text = space == std::string::npos ? "" : rest.substr(space + 1);
      if (!isMetricName(name)) {
        problem(lineNumber, "invalid metric name '" + name + "'");
        continue;
      }
      if (finishedFamilies.count(name) || sampledFamilies.count(name)) {
        problem(lineNumber, (help ? "HELP" : "TYPE") + std::string(" of ") + name +
                                " after its samples");
      }
      if (name != currentFamily && !currentFamily.empty()) finishedFamilies.insert(currentFamily);
      currentFamily = name;
      auto& slot = help ? report.helps : report.types;
      if (slot.count(name)) {
        problem(lineNumber, std::string(help ? "second HELP" : "second TYPE") + " for " + name);
      }
      if (type && text != "counter" && text != "gauge" && text != "histogram" &&
          text != "summary" && text != "untyped") {
        problem(lineNumber, "unknown type '" + text + "' for " + name);
      }
      if (help) {
        for (size_t i = 0; i < text.size(); i++) {
          if (text[i] == '\\' && (i + 1 >= text.size() || (text[i + 1] != '\\' && text[i + 1] != 'n'))) {
            problem(lineNumber, "invalid escape in the HELP of " + name);
          }
          if (text[i] == '\\') i++;
        }
      }
      slot[name] = text;
      continue;
    }

    Sample sample;
    std::string error = parseSample(line, sample);
    if (!error.empty()) {
      problem(lineNumber, error);
      continue;
    }
    std::string family = familyOf(sample.name, report.types);
    if (family != currentFamily) {
      if (!currentFamily.empty()) finishedFamilies.insert(currentFamily);
      if (finishedFamilies.count(family)) {
        problem(lineNumber, "samples of " + family + " are not contiguous");
      }
      currentFamily = family;
    }
    sampledFamilies.insert(family);
    std::string key = seriesKey(sample);
    if (!series.insert(key).second) problem(lineNumber, "duplicate series " + key);
    report.samples[key] = sample.value;

    for (auto& [labelName, labelValue]: sample.labels) {
      if (labelName == "id" || labelName == "object" || labelName == "token" ||
          looksLikeObjectId(labelValue)) {
        problem(lineNumber, key + ": a label that looks like an object id or token");
      }
      if (namingProblem(labelName) == "is not snake_case") {
        problem(lineNumber, "label " + labelName + " is not snake_case");
      }
    }

    auto typeIt = report.types.find(family);
    std::string type = typeIt == report.types.end() ? "" : typeIt->second;
    if (type == "histogram") {
      // Identify the histogram series by its labels without le.
      Sample withoutLe = sample;
      withoutLe.name = family;
      std::string le;
      bool hasLe = false;
      for (auto it = withoutLe.labels.begin(); it != withoutLe.labels.end(); ++it) {
        if (it->first == "le") {
          le = it->second;
          hasLe = true;
          withoutLe.labels.erase(it);
          break;
        }
      }
      auto& state = histogramSeries[seriesKey(withoutLe)];
      if (endsWith(sample.name, "_bucket")) {
        double bound;
        if (!hasLe || !parseFloat(le, bound)) {
          problem(lineNumber, key + ": a bucket needs a numeric le label");
        } else {
          if (bound <= state.lastBound) problem(lineNumber, key + ": le bounds must ascend");
          if (sample.value < state.lastCount) {
            problem(lineNumber, key + ": bucket counts must not decrease");
          }
          state.lastBound = bound;
          state.lastCount = sample.value;
          if (isinf(bound)) {
            state.sawInf = true;
            state.infCount = sample.value;
          }
        }
      } else if (endsWith(sample.name, "_sum")) {
        state.sawSum = true;
      } else if (endsWith(sample.name, "_count")) {
        state.sawCount = true;
        state.count = sample.value;
      } else {
        problem(lineNumber, key + ": a histogram has only _bucket, _sum and _count samples");
      }
    } else {
      for (const char* suffix: {"_bucket", "_sum", "_count"}) {
        if (endsWith(sample.name, suffix)) {
          problem(lineNumber, sample.name + ": the " + suffix +
                                  " suffix is for histograms and summaries");
        }
      }
    }
    if (type == "counter" && sample.value < 0) problem(lineNumber, key + ": a negative counter");
  }

  for (auto& [key, state]: histogramSeries) {
    if (!state.sawInf) report.problems.push_back(key + ": no +Inf bucket");
    if (!state.sawSum) report.problems.push_back(key + ": no _sum");
    if (!state.sawCount) report.problems.push_back(key + ": no _count");
    if (state.sawInf && state.sawCount && state.infCount != state.count) {
      report.problems.push_back(key + ": the +Inf bucket differs from _count");
    }
  }
  for (auto& family: sampledFamilies) {
    if (!report.helps.count(family)) report.problems.push_back(family + ": no HELP");
    if (!report.types.count(family)) report.problems.push_back(family + ": no TYPE");
    if (family.compare(0, requiredPrefix.size(), requiredPrefix) != 0) {
      report.problems.push_back(family + ": lacks the prefix " + requiredPrefix);
    }
    std::string naming = namingProblem(family);
    if (!naming.empty()) report.problems.push_back(family + " " + naming);
    auto type = report.types.count(family) ? report.types.at(family) : "";
    if (type == "counter" && !endsWith(family, "_total")) {
      report.problems.push_back(family + ": a counter's name ends in _total");
    }
    if (type != "counter" && endsWith(family, "_total")) {
      report.problems.push_back(family + ": _total is for counters");
    }
  }
  return report;
}

}  // namespace refstore::server::metrics
