// Writes schema/refstore_error_codes.h from the schema's `ErrorCode` enum, so that the C++ and C
// clients and the daemon share one list of error codes (numbers, names, one-line summaries).
//
// Output: an X-macro usable from C and C++,
//     #define REFSTORE_ERROR_CODES(X) X(1, INVALID_ARGUMENT, "a parameter is ...") ...
// with every code but `ok` (0), in number order.
#include <capnp/schema.h>
#include <kj/debug.h>

#include <cctype>
#include <cstdio>
#include <string>

#include "schema/refstore.capnp.h"

namespace {

// notFound -> NOT_FOUND
std::string upperSnake(kj::StringPtr camel) {
  std::string out;
  for (char c: camel) {
    if (isupper(static_cast<unsigned char>(c))) out += '_';
    out += static_cast<char>(toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// The enumerant's `summary` annotation (the only Text annotation enumerants carry).
std::string summaryOf(capnp::EnumSchema::Enumerant enumerant) {
  for (auto annotation: enumerant.getProto().getAnnotations()) {
    auto value = annotation.getValue();
    if (value.isText()) return value.getText();
  }
  KJ_FAIL_REQUIRE("error code without a $summary annotation", enumerant.getProto().getName());
}

std::string cString(const std::string& text) {
  std::string out = "\"";
  for (char c: text) {
    KJ_REQUIRE(c != '"' && c != '\\' && c != '\n', "summary must be plain text", text);
    out += c;
  }
  return out + "\"";
}

}  // namespace

int main() {
  auto codes = capnp::Schema::from<refstore::proto::ErrorCode>().getEnumerants();
  printf("// Generated from schema/refstore.capnp (enum ErrorCode) by schema/error_codes_gen.\n");
  printf("// Do not edit: add codes to the schema.\n");
  printf("#ifndef REFSTORE_SCHEMA_ERROR_CODES_H_\n#define REFSTORE_SCHEMA_ERROR_CODES_H_\n\n");
  printf("// X(number, NAME, summary) for every error code (the daemon's word is refstore.NAME).\n");
  printf("#define REFSTORE_ERROR_CODES(X) \\\n");
  for (uint i = 1; i < codes.size(); i++) {
    KJ_REQUIRE(codes[i].getOrdinal() == i, "error codes must be numbered without gaps");
    printf("  X(%u, %s, %s)%s\n", i, upperSnake(codes[i].getProto().getName()).c_str(),
           cString(summaryOf(codes[i])).c_str(), i + 1 < codes.size() ? " \\" : "");
  }
  printf("\n// The largest error code.\n#define REFSTORE_LAST_ERROR_CODE %u\n", codes.size() - 1);
  printf("\n#endif  // REFSTORE_SCHEMA_ERROR_CODES_H_\n");
  return 0;
}
