#include "tools/bench/bench_hosts.h"

#include <stdio.h>

#include <stdexcept>

#include "tools/bench/context.h"

namespace refbench {

BenchHosts::BenchHosts(const Context& ctx, const BenchLink& link, size_t count,
                       const std::string& prefix, const std::string& memory,
                       const std::vector<std::string>& extraArgs)
    : hostLink(link) {
  // The cluster secret: loopback addresses do not require one, but real hosts do, and peers then
  // present it when they connect (once per pair of daemons: nothing on the measured paths).
  std::string secret = ctx.tmp.path() + "/" + prefix + "secret";
  FILE* file = fopen(secret.c_str(), "w");
  if (file == nullptr) throw std::runtime_error("cannot write " + secret);
  fputs("refbench-cluster-secret", file);
  fclose(file);
  for (size_t i = 0; i < count; i++) {
    std::vector<std::string> args = ctx.options.refstoredArgs;
    // Port 0: the daemon picks a free port and puts the one it got into its tokens.
    args.insert(args.end(), {"--tcp", ip(i) + ":0", "--secret-file", secret});
    args.insert(args.end(), extraArgs.begin(), extraArgs.end());
    BenchLink::InNetwork onHost(link, i);  // the daemon runs on host i's network
    daemons.push_back(std::make_unique<Refstored>(ctx.refstoredBinary, ctx.tmp,
                                                  prefix + std::to_string(i), memory, args));
  }
}

BenchHosts::~BenchHosts() {
  // The readers first: their proxies release the owner's objects while it still runs.
  while (!daemons.empty()) daemons.pop_back();
}

}  // namespace refbench
