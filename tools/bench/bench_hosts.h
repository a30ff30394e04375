// Several refstored "hosts" on this machine for the cross-host workloads: daemon i listens on its
// own Unix socket and on TCP at host i's address on the link (bench_link.h: a loopback alias
// 127.0.0.(i+2), or its own network namespace), with its own spill directory and the cluster
// secret. A token minted on one host names that host's address, and a daemon restoring it dials
// the owner there and pulls the bytes over the owner's data port on the same address.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tools/bench/bench_link.h"
#include "tools/bench/services.h"

namespace refbench {

struct Context;

class BenchHosts {
 public:
  // `count` daemons named "<prefix>0", "<prefix>1"..., each with `memory` and `extraArgs` (plus
  // the context's --refstored-arg flags), daemon i on host i of `link`.
  BenchHosts(const Context& ctx, const BenchLink& link, size_t count, const std::string& prefix,
             const std::string& memory, const std::vector<std::string>& extraArgs = {});
  ~BenchHosts();

  size_t size() const { return daemons.size(); }
  Refstored& operator[](size_t i) { return *daemons.at(i); }
  // The address host i listens on ("127.0.0.2" for host 0 on loopback).
  std::string ip(size_t i) const { return hostLink.ip(i); }
  const BenchLink& link() const { return hostLink; }

 private:
  const BenchLink& hostLink;
  std::vector<std::unique_ptr<Refstored>> daemons;
};

}  // namespace refbench
