// Names: the syntax of the explicit pins made with `Ref.saveAs` and found with `Store.lookup`.
#pragma once

#include <kj/string.h>

namespace refstore::server {

constexpr size_t kMaxNameLength = 256;

// 1..256 printable ASCII characters (0x21..0x7e): no spaces or control characters, so names
// survive shells, logs and URLs unchanged. Throws INVALID_ARGUMENT naming the problem.
void validateName(kj::StringPtr name);

}  // namespace refstore::server
