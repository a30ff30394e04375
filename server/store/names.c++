#include "server/store/names.h"

#include "server/runtime/errors.h"

namespace refstore::server {

void validateName(kj::StringPtr name) {
  RS_REQUIRE(name.size() > 0, INVALID_ARGUMENT, "a name cannot be empty");
  RS_REQUIRE(name.size() <= kMaxNameLength, INVALID_ARGUMENT, "name is ", name.size(),
             " bytes; the limit is ", kMaxNameLength);
  for (size_t i = 0; i < name.size(); i++) {
    unsigned char c = name[i];
    RS_REQUIRE(c >= 0x21 && c <= 0x7e, INVALID_ARGUMENT, "name has a space, control or non-ASCII "
               "character at byte ", i, " (allowed: printable ASCII without spaces)");
  }
}

}  // namespace refstore::server
