// Fuzzes size parsing (server/runtime/size_parse.h: --memory, --segment-size; a typo there must
// be a clear error, never a wrong capacity). Properties, for the input as text `s`:
//   - parseSize never crashes (UBSan checks the double -> uint64 conversion);
//   - when s parses and has no unit, the units agree: s+"B" is s, s+"K" = s+"KB" = s+"KiB" is
//     1024 times s (up to the fraction s dropped), and so on up to T; a result that would not
//     fit in 64 bits is refused rather than wrapped;
//   - formatSize(n) for any n below 2^63, with its space removed, parses back to n within the
//     0.05-unit rounding of its one decimal.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <kj/debug.h>
#include <string>

#include "fuzz/fuzz_input.h"
#include "server/runtime/size_parse.h"

using refstore::fuzz::FuzzInput;
using refstore::server::formatSize;
using refstore::server::parseSize;

namespace {

kj::Maybe<uint64_t> parse(const std::string& text) { return parseSize(text.c_str()); }

bool hasUnit(const std::string& text) {
  return !text.empty() && !(text.back() >= '0' && text.back() <= '9') && text.back() != '.';
}

void checkUnits(const std::string& text) {
  auto plain = parse(text);
  if (plain == nullptr || hasUnit(text)) return;
  uint64_t value = KJ_ASSERT_NONNULL(plain);
  KJ_ASSERT(parse(text + "B") == value, text);
  const char* units[][3] = {{"K", "KB", "KiB"}, {"M", "MB", "MiB"}, {"G", "GB", "GiB"},
                            {"T", "TB", "TiB"}};
  for (int power = 1; power <= 4; power++) {
    auto& names = units[power - 1];
    auto scaled = parse(text + names[0]);
    KJ_ASSERT(parse(text + names[1]) == scaled && parse(text + names[2]) == scaled, text);
    unsigned shift = 10 * power;
    // floor(x * 2^shift) lies in [floor(x) << shift, (floor(x) + 1) << shift).
    bool fits = value < (uint64_t(1) << (64 - shift));
    KJ_IF_MAYBE(got, scaled) {
      KJ_ASSERT(fits, "a size beyond 64 bits was accepted", text, names[0], *got);
      KJ_ASSERT(*got >= value << shift, text, names[0], *got);
      KJ_ASSERT(value + 1 == (uint64_t(1) << (64 - shift)) || *got < (value + 1) << shift,
                text, names[0], *got);
    } else {
      // Refused: only because it does not fit (the largest representable fractions aside).
      KJ_ASSERT(value >= (uint64_t(1) << (64 - shift)) - 1, "a valid size was refused", text,
                names[0]);
    }
  }
}

void checkFormat(uint64_t n) {
  kj::String shown = formatSize(n);
  std::string text(shown.cStr());
  size_t space = text.find(' ');
  KJ_ASSERT(space != std::string::npos, text);
  text.erase(space, 1);
  uint64_t back = KJ_ASSERT_NONNULL(parse(text), "formatSize's output does not parse", n, shown);
  double unit = 1;
  while (n / unit >= 1024 && unit < 1099511627776.0) unit *= 1024;
  double error = fabs(double(back) - double(n));
  // One decimal of the unit, and double rounding (a 53-bit mantissa) on the way back.
  KJ_ASSERT(error <= 0.05 * unit + 1 + double(n) / (1ull << 50), n, shown, back);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* chars = reinterpret_cast<const char*>(data);
  std::string text(chars, strnlen(chars, size));  // up to a NUL: what a command line can hold
  checkUnits(text);
  FuzzInput input(data, size);
  uint64_t n = input.u64();
  checkFormat(n >> 1);                 // anywhere below 2^63
  checkFormat(n >> (n & 63) >> 1);     // small ones as often as large
  return 0;
}
