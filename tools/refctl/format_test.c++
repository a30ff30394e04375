// Tests for tools/refctl/format.h: sizes, durations, rates and shares as people read them, and
// JSON escaping.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "tools/refctl/format.h"

using namespace refstore::tools;

TEST_CASE("sizes use IEC units, one decimal below ten") {
  CHECK(formatBytes(0) == "0 B");
  CHECK(formatBytes(1) == "1 B");
  CHECK(formatBytes(1023) == "1023 B");
  CHECK(formatBytes(1024) == "1.0 KiB");
  CHECK(formatBytes(1536) == "1.5 KiB");
  CHECK(formatBytes(10 * 1024) == "10 KiB");
  CHECK(formatBytes(512 * 1024) == "512 KiB");
  CHECK(formatBytes(1288490189) == "1.2 GiB");
  CHECK(formatBytes(uint64_t(1) << 40) == "1.0 TiB");
  // Never "1024 KiB": rounding that would reach the next unit moves to it.
  CHECK(formatBytes(1024 * 1024 - 1) == "1.0 MiB");
  CHECK(formatBytes(1023 * 1024) == "1023 KiB");
  CHECK(formatBytes(UINT64_MAX) == "16 EiB");
}

TEST_CASE("durations pick a unit people read at a glance") {
  CHECK(formatDuration(0) == "0 µs");
  CHECK(formatDuration(0.00085) == "850 µs");
  CHECK(formatDuration(0.0025) == "2.5 ms");
  CHECK(formatDuration(0.035) == "35 ms");
  CHECK(formatDuration(0.9999) == "1.0 s");
  CHECK(formatDuration(1.5) == "1.5 s");
  CHECK(formatDuration(42) == "42 s");
  CHECK(formatDuration(60) == "1 min");
  CHECK(formatDuration(182) == "3 min 2 s");
  CHECK(formatDuration(7500) == "2 h 5 min");
  CHECK(formatDuration(273600) == "3 d 4 h");
  CHECK(formatDuration(-1) == "0 µs");
  CHECK(formatMillis(35) == "35 ms");
  CHECK(formatMillis(3600000) == "1 h");
}

TEST_CASE("rates and shares") {
  CHECK(formatRate(1288490189) == "1.2 GiB/s");
  CHECK(formatRate(0) == "0 B/s");
  CHECK(formatRate(1.0 / 0.0) == "-");
  CHECK(formatShare(18, 100) == "18%");
  CHECK(formatShare(0, 100) == "0%");
  CHECK(formatShare(1, 1000) == "<1%");
  CHECK(formatShare(5, 0) == "0%");
  CHECK(formatShare(3, 2) == "150%");
}

TEST_CASE("JSON strings escape quotes, backslashes and control characters") {
  CHECK(jsonString("plain") == "\"plain\"");
  CHECK(jsonString("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(jsonString("tab\there\n") == "\"tab\\u0009here\\u000a\"");
  CHECK(jsonString("ünï") == "\"ünï\"");
}
