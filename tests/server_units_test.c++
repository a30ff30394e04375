// Unit tests for the daemon's small pure pieces: the share-token format and size parsing.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "server/size_parse.h"
#include "server/token.h"

using namespace refstore::server;

TEST_CASE("tokens round-trip: fixed-width lowercase hex, the lease, and an optional address") {
  Token token{{0x0123456789abcdefull, 42}, 0x99, 1790000000, {0xfedcba9876543210ull, 7}, kj::str()};
  kj::String text = formatToken(token);
  CHECK(text.size() == 103);
  CHECK(text.startsWith("rs2.0123456789abcdef000000000000002a.0000000000000099."));
  auto check = [&](kj::StringPtr text, kj::StringPtr address) {
    KJ_IF_MAYBE(parsed, parseToken(text)) {
      CHECK(parsed->id.hi == token.id.hi);
      CHECK(parsed->id.lo == token.id.lo);
      CHECK(parsed->lease == token.lease);
      CHECK(parsed->expiresUnixSeconds == token.expiresUnixSeconds);
      CHECK(parsed->secret.hi == token.secret.hi);
      CHECK(parsed->secret.lo == token.secret.lo);
      CHECK(parsed->ownerAddress == address);
    } else {
      FAIL("a formatted token must parse: ", text.cStr());
    }
  };
  check(text, "");
  for (kj::StringPtr address: {"10.0.0.5:7400"_kj, "host-a.example:1"_kj, "[::1]:7400"_kj}) {
    token.ownerAddress = kj::str(address);
    kj::String withAddress = formatToken(token);
    CHECK(withAddress == kj::str(text, "@", address));
    check(withAddress, address);
  }
}

TEST_CASE("malformed tokens are rejected") {
  std::string good = formatToken(Token{{1, 2}, 6, 3, {4, 5}, kj::str()}).cStr();
  CHECK(parseToken(good.c_str()) != nullptr);
  std::string cases[] = {
      "",
      good.substr(0, good.size() - 1),             // short
      good + "0",                                  // long, and no '@'
      good + "@",                                  // an empty address
      good + "@host",                              // no port
      good + "@host:",                             // an empty port
      good + "@host:12a",                          // a port that is not a number
      good + "@:7400",                             // no host
      good + "@ho st:1",                           // a space
      good + "@host:1@other:2",                    // two addresses
      "rs3" + good.substr(3),                      // unknown version
      good.substr(0, 36) + "-" + good.substr(37),  // wrong separator
      good.substr(0, 50) + "G" + good.substr(51),  // not hex
      good.substr(0, 50) + "A" + good.substr(51),  // uppercase is not canonical
  };
  for (auto& text: cases) CHECK_MESSAGE(parseToken(text.c_str()) == nullptr, text);
}

TEST_CASE("an rs1 token of refstored 0.1 parses, naming no lease") {
  std::string text = "rs1.00000000000000010000000000000002.0000000000000003."
                     "00000000000000040000000000000005";
  KJ_IF_MAYBE(parsed, parseToken(text.c_str())) {
    CHECK(parsed->id.hi == 1);
    CHECK(parsed->id.lo == 2);
    CHECK(parsed->lease == 0);
    CHECK(parsed->expiresUnixSeconds == 3);
    CHECK(parsed->secret.lo == 5);
  } else {
    FAIL("an rs1 token must parse");
  }
  CHECK(parseToken((text + "@host:1").c_str()) == nullptr);  // rs1 had no address
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
