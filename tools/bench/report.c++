#include "tools/bench/report.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace refbench {
namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c: s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (uint8_t(c) < 0x20) {
      char esc[8];
      snprintf(esc, sizeof(esc), "\\u%04x", c);
      out += esc;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string number(double x) {
  if (!std::isfinite(x)) return "null";
  char text[32];
  // Integers print exactly; others with 4 significant digits (the noise floor here is worse).
  if (x == std::floor(x) && std::fabs(x) < 1e15) {
    snprintf(text, sizeof(text), "%.0f", x);
  } else {
    snprintf(text, sizeof(text), "%.4g", x);
  }
  return text;
}

std::string json(const Value& v) {
  switch (v.kind) {
    case Value::NUMBER: return number(v.number);
    case Value::BOOL: return v.flag ? "true" : "false";
    case Value::STRING: return quote(v.text);
  }
  return "null";
}

std::string csv(const Value& v) {
  switch (v.kind) {
    case Value::NUMBER: return std::isfinite(v.number) ? number(v.number) : "NaN";
    case Value::BOOL: return v.flag ? "1" : "0";
    case Value::STRING: return v.text;
  }
  return "";
}

}  // namespace

void Table::add(std::vector<Value> row) {
  if (row.size() != columns.size()) throw std::logic_error("table row has the wrong width");
  rows.push_back(std::move(row));
}

void Table::appendSummary(std::vector<Value>& row, const Summary& s, double scale) {
  for (double x: {s.median, s.p25, s.p75, s.min, s.max}) row.push_back(x * scale);
}

std::vector<std::string> Table::summaryColumns(const std::string& prefix) {
  return {prefix + "_median", prefix + "_p25", prefix + "_p75", prefix + "_min", prefix + "_max"};
}

void Report::set(const std::string& key, Value value) {
  for (auto& entry: figures) {
    if (entry.first == key) {
      entry.second = std::move(value);
      return;
    }
  }
  figures.emplace_back(key, std::move(value));
}

Table& Report::table(const std::string& name, std::vector<std::string> columns) {
  for (auto& entry: tables) {
    if (entry.first == name) return entry.second;
  }
  tables.emplace_back(name, Table(std::move(columns)));
  return tables.back().second;
}

std::string Report::json() const {
  std::ostringstream out;
  out << "{\n";
  for (auto& [key, value]: figures) out << "  " << quote(key) << ": " << refbench::json(value) << ",\n";
  out << "  \"tables\": {";
  bool firstTable = true;
  for (auto& [name, table]: tables) {
    out << (firstTable ? "\n" : ",\n") << "    " << quote(name) << ": [";
    firstTable = false;
    bool firstRow = true;
    for (auto& row: table.rows) {
      out << (firstRow ? "\n" : ",\n") << "      {";
      firstRow = false;
      for (size_t i = 0; i < row.size(); i++) {
        out << (i ? ", " : "") << quote(table.columns[i]) << ": " << refbench::json(row[i]);
      }
      out << "}";
    }
    out << "\n    ]";
  }
  out << "\n  }\n}\n";
  return out.str();
}

void Report::writeCsv(const std::string& dir) const {
  mkdir(dir.c_str(), 0755);
  for (auto& [name, table]: tables) {
    std::ofstream file(dir + "/" + name + ".csv");
    if (!file) throw std::runtime_error("cannot write " + dir + "/" + name + ".csv");
    for (size_t i = 0; i < table.columns.size(); i++) file << (i ? "," : "") << table.columns[i];
    file << "\n";
    for (auto& row: table.rows) {
      for (size_t i = 0; i < row.size(); i++) file << (i ? "," : "") << csv(row[i]);
      file << "\n";
    }
  }
}

}  // namespace refbench
