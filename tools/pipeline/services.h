// The three roles of the pipeline example. Each runs on the refstore client's event loop.
#pragma once

#include <string>

#include "client/cpp/refstore_async.h"
#include "tools/pipeline/pipeline.capnp.h"

namespace refstore::pipeline {

// Serves `bootstrap` on a Unix socket at `path` until the process is killed.
[[noreturn]] void serveForever(Client& client, const std::string& path,
                               capnp::Capability::Client bootstrap);

capnp::Capability::Client newProducer(Client& client);
capnp::Capability::Client newAdder(Client& client);

struct DriverOptions {
  std::string producerSocket, adderSocket;
  uint64_t count = 1 << 17;  // values of 1 MiB
  bool byValue = false;
  int repetitions = 1;
};
// Runs a = f(1); b = f(2); c = add(a, b), checks c, prints one JSON line; returns 0 if correct.
int runDriver(Client& client, const DriverOptions& options);

}  // namespace refstore::pipeline
