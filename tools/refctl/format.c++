#include "tools/refctl/format.h"

#include <math.h>
#include <stdio.h>

namespace refstore::tools {

namespace {

std::string printf1(const char* format, double value) {
  char text[64];
  snprintf(text, sizeof(text), format, value);
  return text;
}

// `value` with one decimal below 10, none above ("2.5", "35").
std::string shortNumber(double value) {
  return value < 9.95 ? printf1("%.1f", value) : printf1("%.0f", value);
}

}  // namespace

std::string formatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = bytes;
  size_t unit = 0;
  // Move up while the value would print as 1024 or more ("1024 KiB" is "1.0 MiB").
  while (unit + 1 < sizeof(kUnits) / sizeof(kUnits[0]) && value >= 1023.5) {
    value /= 1024;
    unit++;
  }
  return shortNumber(value) + " " + kUnits[unit];
}

std::string formatDuration(double seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 0.0009995) return printf1("%.0f µs", seconds * 1e6);
  if (seconds < 0.9995) return shortNumber(seconds * 1e3) + " ms";
  if (seconds < 59.5) return shortNumber(seconds) + " s";
  // From a minute on, two whole units.
  uint64_t whole = llround(seconds);
  auto two = [](uint64_t big, const char* bigUnit, uint64_t small, const char* smallUnit) {
    std::string out = std::to_string(big) + " " + bigUnit;
    if (small > 0) out += " " + std::to_string(small) + " " + smallUnit;
    return out;
  };
  if (whole < 3600) return two(whole / 60, "min", whole % 60, "s");
  if (whole < 86400) return two(whole / 3600, "h", whole % 3600 / 60, "min");
  return two(whole / 86400, "d", whole % 86400 / 3600, "h");
}

std::string formatMillis(uint64_t millis) { return formatDuration(millis / 1e3); }

std::string formatRate(double bytesPerSecond) {
  if (!(bytesPerSecond >= 0) || isinf(bytesPerSecond)) return "-";
  return formatBytes(uint64_t(bytesPerSecond)) + "/s";
}

std::string formatShare(uint64_t part, uint64_t whole) {
  if (part == 0 || whole == 0) return "0%";
  double percent = 100.0 * part / whole;
  if (percent < 0.5) return "<1%";
  return printf1("%.0f", percent) + "%";
}

std::string jsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c: text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c < 0x20) {
      char escaped[8];
      snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace refstore::tools
