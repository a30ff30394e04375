// Unit tests for the daemon's small pure pieces: the share-token format and size parsing.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "server/size_parse.h"
#include "server/token.h"

using namespace refstore::server;

TEST_CASE("tokens round-trip and are fixed-width lowercase hex") {
  Token token{{0x0123456789abcdefull, 42}, 1790000000, {0xfedcba9876543210ull, 7}};
  kj::String text = formatToken(token);
  CHECK(text.size() == 86);
  CHECK(text.startsWith("rs1.0123456789abcdef000000000000002a."));
  KJ_IF_MAYBE(parsed, parseToken(text)) {
    CHECK(parsed->id.hi == token.id.hi);
    CHECK(parsed->id.lo == token.id.lo);
    CHECK(parsed->expiresUnixSeconds == token.expiresUnixSeconds);
    CHECK(parsed->secret.hi == token.secret.hi);
    CHECK(parsed->secret.lo == token.secret.lo);
  } else {
    FAIL("a formatted token must parse");
  }
}

TEST_CASE("malformed tokens are rejected") {
  std::string good = formatToken(Token{{1, 2}, 3, {4, 5}}).cStr();
  CHECK(parseToken(good.c_str()) != nullptr);
  std::string cases[] = {
      "",
      good.substr(0, good.size() - 1),             // short
      good + "0",                                  // long
      "rs2" + good.substr(3),                      // wrong version
      good.substr(0, 36) + "-" + good.substr(37),  // wrong separator
      good.substr(0, 50) + "G" + good.substr(51),  // not hex
      good.substr(0, 50) + "A" + good.substr(51),  // uppercase is not canonical
  };
  for (auto& text: cases) CHECK_MESSAGE(parseToken(text.c_str()) == nullptr, text);
}

TEST_CASE("random secrets are distinct") {
  std::set<std::pair<uint64_t, uint64_t>> seen;
  for (int i = 0; i < 1000; i++) {
    auto secret = randomSecret();
    seen.insert({secret.hi, secret.lo});
  }
  CHECK(seen.size() == 1000);
}

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
