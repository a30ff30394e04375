// Error reporting for refstored.
//
// Every failure a client can see is a Cap'n Proto exception whose description starts with
// `refstore.<CODE>`, CODE being one of the schema's ErrorCode names in UPPER_SNAKE_CASE
// (`refstore.NOT_FOUND`, ...), followed by ": " and an explanation. Clients (client/cpp,
// client/c) parse that word, so always throw through RS_FAIL / RS_REQUIRE, never a bare
// KJ_REQUIRE, for client-facing errors.
#pragma once

#include <kj/debug.h>
#include <kj/exception.h>
#include "schema/refstore.capnp.h"

// The description's first word for CODE, e.g. RS_ERROR_WORD(NOT_FOUND) is "refstore.NOT_FOUND".
// Naming a code the schema does not have fails to compile.
#define RS_ERROR_WORD(CODE) \
  (static_cast<void>(::refstore::proto::ErrorCode::CODE), "refstore." #CODE)

// Throws `refstore.<CODE>: <message...>`, e.g. RS_FAIL(NOT_FOUND, "token unknown or expired").
#define RS_FAIL(CODE, ...)                                              \
  ::kj::throwFatalException(::kj::Exception(                            \
      ::kj::Exception::Type::FAILED, __FILE__, __LINE__,                \
      ::kj::str(RS_ERROR_WORD(CODE), ": ", __VA_ARGS__)))

// RS_FAIL unless `cond` holds.
#define RS_REQUIRE(cond, CODE, ...) \
  do {                              \
    if (!(cond)) RS_FAIL(CODE, __VA_ARGS__); \
  } while (false)
