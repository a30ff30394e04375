// Unit tests of size parsing and formatting (size_parse.h).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "server/runtime/size_parse.h"

using namespace refstore::server;

TEST_CASE("sizes parse with binary units and reject junk") {
  CHECK(parseSize("4096") == uint64_t(4096));
  CHECK(parseSize("64K") == uint64_t(64) << 10);
  CHECK(parseSize("512MiB") == uint64_t(512) << 20);
  CHECK(parseSize("2G") == uint64_t(2) << 30);
  CHECK(parseSize("1.5GB") == uint64_t(3) << 29);
  CHECK(parseSize("1T") == uint64_t(1) << 40);
  for (const char* junk: {"", "G", "-1G", "12X", "1e400", " 5M", "5 M", "0x10", "0x10B", "1e3",
                          "1.5.5G", "99999999999999999999"}) {
    CHECK_MESSAGE(parseSize(junk) == nullptr, junk);
  }
  CHECK(formatSize(0) == kj::StringPtr("0 B"));
  CHECK(formatSize(uint64_t(3) << 29) == kj::StringPtr("1.5 GiB"));
}
