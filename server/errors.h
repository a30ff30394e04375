// Error reporting for refstored.
//
// Every failure a client can see is a Cap'n Proto exception whose description starts with
// one of the stable code words declared in schema/refstore.capnp (`refstore.NOT_FOUND`, ...),
// followed by ": " and an explanation. Clients (client/cpp, client/c) parse that word, so
// always throw through RS_FAIL / RS_REQUIRE, never a bare KJ_REQUIRE, for client-facing errors.
#pragma once

#include <kj/debug.h>
#include <kj/exception.h>
#include "schema/refstore.capnp.h"

// Throws `refstore.<CODE>: <message...>`. CODE is the upper-case suffix of an `err*` constant in the
// schema, e.g. RS_FAIL(NOT_FOUND, "token unknown or expired").
#define RS_FAIL(CODE, ...)                                              \
  ::kj::throwFatalException(::kj::Exception(                            \
      ::kj::Exception::Type::FAILED, __FILE__, __LINE__,                \
      ::kj::str(::refstore::proto::ERR_##CODE.get(), ": ", __VA_ARGS__)))

// RS_FAIL unless `cond` holds.
#define RS_REQUIRE(cond, CODE, ...) \
  do {                              \
    if (!(cond)) RS_FAIL(CODE, __VA_ARGS__); \
  } while (false)
