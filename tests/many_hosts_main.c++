// main() of many-host tests (many_hosts_test in tests/defs.bzl): runs the doctest cases on the
// network $REFSTORE_TEST_NETWORK names. Cases in the test suite "namespaces only" (link control)
// are left out on loopback. In namespaces, where they are unavailable (not root, or a sandbox),
// the whole test is skipped with a message saying why, before any case runs; with
// REFSTORE_REQUIRE_NAMESPACES=1 (for CI, which runs as root) that is a failure instead.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <stdio.h>
#include <stdlib.h>

#include <string>

#include "tests/hosts.h"

using namespace refstore::testing;

int main(int argc, char** argv) {
  Network network = testNetwork();
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  if (network == Network::NAMESPACES) {
    std::string why = namespacesUnavailable();
    if (!why.empty()) {
      const char* required = getenv("REFSTORE_REQUIRE_NAMESPACES");
      bool mustRun = required != nullptr && std::string(required) == "1";
      fprintf(stderr, "%s: every case of this test runs in network namespaces, unavailable here: "
              "%s\n", mustRun ? "FAILED (REFSTORE_REQUIRE_NAMESPACES=1)" : "SKIPPED",
              why.c_str());
      return mustRun ? 1 : 0;
    }
  } else {
    context.addFilter("test-suite-exclude", "namespaces only");
  }
  fprintf(stderr, "many-host test on the %s network\n", networkName(network));
  return context.run();
}
