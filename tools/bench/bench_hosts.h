// Several refstored "hosts" on this machine for the cross-host workloads: daemon i listens on its
// own Unix socket and on TCP at the loopback alias 127.0.0.(i+2) (Linux routes all of 127/8 to
// lo, so nothing needs setting up), with its own spill directory and the cluster secret. A token
// minted on one host names that host's address, and a daemon restoring it dials the owner there
// and pulls the bytes over the owner's data port on the same address.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tools/bench/services.h"

namespace refbench {

struct Context;

class BenchHosts {
 public:
  // `count` daemons named "<prefix>0", "<prefix>1"..., each with `memory` and `extraArgs` (plus
  // the context's --refstored-arg flags).
  BenchHosts(const Context& ctx, size_t count, const std::string& prefix,
             const std::string& memory, const std::vector<std::string>& extraArgs = {});
  ~BenchHosts();

  size_t size() const { return daemons.size(); }
  Refstored& operator[](size_t i) { return *daemons.at(i); }
  // The loopback address host i listens on ("127.0.0.2" for host 0).
  static std::string ip(size_t i) { return "127.0.0." + std::to_string(i + 2); }

 private:
  std::vector<std::unique_ptr<Refstored>> daemons;
};

}  // namespace refbench
