// How refctl writes numbers for people (sizes in IEC units, durations, rates, shares) and
// strings for JSON. Pure functions: unit-tested in format_test.c++.
#pragma once

#include <stdint.h>

#include <string>

namespace refstore::tools {

// "0 B", "512 B", "1.5 KiB", "12 MiB", "1.2 GiB": one decimal below 10 units, none above.
std::string formatBytes(uint64_t bytes);
// "850 µs", "2.5 ms", "35 ms", "1.5 s", "42 s", "3 min 2 s", "2 h 5 min", "3 d 4 h".
std::string formatDuration(double seconds);
std::string formatMillis(uint64_t millis);  // formatDuration(millis / 1000)
// "1.2 GiB/s".
std::string formatRate(double bytesPerSecond);
// `part` of `whole` as "18%", "<1%" for a small non-zero share, "0%" for none.
std::string formatShare(uint64_t part, uint64_t whole);
// A JSON string literal: quotes, backslash and control characters escaped.
std::string jsonString(const std::string& text);

}  // namespace refstore::tools
