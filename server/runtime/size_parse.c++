#include "server/runtime/size_parse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

namespace refstore::server {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

kj::Maybe<uint64_t> parseSize(kj::StringPtr text) {
  // The number: decimal digits, perhaps with a fraction. Only that goes to strtod, which would
  // also take hexadecimal ("0x10B" as 267 bytes, not 16 B), exponents and "inf".
  size_t length = 0;
  while (length < text.size() && isDigit(text[length])) length++;
  if (length == 0) return nullptr;
  if (length < text.size() && text[length] == '.') {
    length++;
    while (length < text.size() && isDigit(text[length])) length++;
  }
  double number = strtod(kj::heapString(text.slice(0, length)).cStr(), nullptr);
  kj::StringPtr unit = text.slice(length);
  double multiplier;
  if (unit == "" || unit == "B") multiplier = 1;
  else if (unit == "K" || unit == "KB" || unit == "KiB") multiplier = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MiB") multiplier = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GiB") multiplier = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TB" || unit == "TiB") multiplier = 1024.0 * 1024 * 1024 * 1024;
  else return nullptr;
  double bytes = number * multiplier;
  if (!isfinite(bytes) || bytes < 0 || bytes >= 18446744073709551615.0) return nullptr;
  return static_cast<uint64_t>(bytes);
}

kj::String formatSize(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = bytes;
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    unit++;
  }
  char buffer[32];
  snprintf(buffer, sizeof(buffer), unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return kj::str(buffer);
}

}  // namespace refstore::server
