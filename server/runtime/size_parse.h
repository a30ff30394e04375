// Parsing human sizes on the command line: "4096", "64K", "512MiB", "2G", "1.5GB".
#pragma once

#include <stdint.h>

#include <kj/string.h>

namespace refstore::server {

// A decimal number (perhaps with a fraction) and an optional unit: B, K/KB/KiB, M..., G...,
// T... in binary multiples (K = 1024). nullptr on anything else (negative, hexadecimal,
// exponents, junk, overflow).
kj::Maybe<uint64_t> parseSize(kj::StringPtr text);

// "1.5 GiB"-style rendering for logs.
kj::String formatSize(uint64_t bytes);

}  // namespace refstore::server
