// What refbench reports: headline figures (the keys BENCHMARKS.md lists: `..._vs_...` are
// speedups of refstore over a baseline, bigger is better; `..._over_...` are time ratios) and
// per-size tables. Printed as one JSON object (--json) and written as CSV files (--csv DIR)
// that tools/bench/plot.sh turns into charts.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tools/bench/timing.h"

namespace refbench {

// A JSON scalar: number, bool, string or null (a NaN number prints as null).
struct Value {
  enum Kind { NUMBER, BOOL, STRING } kind = NUMBER;
  double number = 0;
  bool flag = false;
  std::string text;
  Value(double n): kind(NUMBER), number(n) {}
  Value(int n): kind(NUMBER), number(n) {}
  Value(uint64_t n): kind(NUMBER), number(double(n)) {}
  Value(bool b): kind(BOOL), flag(b) {}
  Value(const char* s): kind(STRING), text(s) {}
  Value(std::string s): kind(STRING), text(std::move(s)) {}
};

class Table {
 public:
  explicit Table(std::vector<std::string> columns): columns(std::move(columns)) {}
  // One row; values in column order.
  void add(std::vector<Value> row);
  // Appends median, p25, p75, min, max (scaled by `scale`) to a row being built.
  static void appendSummary(std::vector<Value>& row, const Summary& s, double scale = 1.0);
  // Column names for appendSummary: <prefix>_median, <prefix>_p25, ...
  static std::vector<std::string> summaryColumns(const std::string& prefix);

  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
};

class Report {
 public:
  void set(const std::string& key, Value value);
  Table& table(const std::string& name, std::vector<std::string> columns);
  // Headline keys are printed first, in the order they were first set.
  std::string json() const;
  // One <table>.csv per table, with a header row.
  void writeCsv(const std::string& dir) const;

 private:
  std::vector<std::pair<std::string, Value>> figures;
  std::vector<std::pair<std::string, Table>> tables;
};

}  // namespace refbench
