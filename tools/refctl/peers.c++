// refctl peers: the daemon's connections to other daemons (many hosts): address, state,
// references held each way, bytes copied each way, and when each was last heard from.
#include <cinttypes>

#include "tools/refctl/command.h"
#include "tools/refctl/format.h"

namespace refstore::tools {

namespace {

class PeersCommand final: public Command {
 public:
  explicit PeersCommand(Globals& globals): globals(globals) {}

  kj::MainFunc getMain() override {
    kj::MainBuilder builder(globals.context, "refctl peers",
                            "List the connections to other refstored daemons: where each is, "
                            "whether it is up, the references each holds on the other's objects "
                            "and the bytes copied each way.");
    output.addTo(builder, "A JSON array, one object per connection.");
    watch.addTo(builder);
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, run)).build();
  }

 private:
  kj::MainBuilder::Validity run() {
    return globals.guarded([&]() {
      Client client = globals.connect();
      watch.repeat("refctl peers", output, [&]() { print(client.peers()); });
    });
  }

  void print(const std::vector<PeerInfo>& peers) {
    if (output.json) {
      printf("[");
      for (size_t i = 0; i < peers.size(); i++) {
        auto& p = peers[i];
        printf("%s{\"origin\": \"%016" PRIx64 "\", \"address\": %s, \"state\": \"%s\", "
               "\"outgoing\": %s, \"held_by_peer\": %" PRIu64 ", \"held_from_peer\": %" PRIu64
               ", \"bytes_pulled\": %" PRIu64 ", \"bytes_served\": %" PRIu64
               ", \"last_heard_ms\": %" PRIu64 "}",
               i ? ", " : "", p.origin, jsonString(p.address).c_str(), p.state.c_str(),
               p.outgoing ? "true" : "false", p.heldByPeer, p.heldFromPeer, p.bytesPulled,
               p.bytesServed, p.lastHeardMs);
      }
      printf("]\n");
      return;
    }
    if (peers.empty()) {
      printf("no peers\n");
      return;
    }
    bool human = output.human();
    printf("%-16s  %-22s  %-10s  %-4s  %10s  %10s  %10s  %10s  %10s\n", "ORIGIN", "ADDRESS",
           "STATE", "DIR", "HELD-BY", "HELD-FROM", "PULLED", "SERVED", "HEARD");
    for (auto& p: peers) {
      printf("%016" PRIx64 "  %-22s  %-10s  %-4s  %10" PRIu64 "  %10" PRIu64 "  %10s  %10s  %10s\n",
             p.origin, p.address.c_str(), p.state.c_str(), p.outgoing ? "out" : "in",
             p.heldByPeer, p.heldFromPeer, figure(p.bytesPulled, human).c_str(),
             figure(p.bytesServed, human).c_str(),
             (human ? formatMillis(p.lastHeardMs) + " ago" : std::to_string(p.lastHeardMs)).c_str());
    }
  }

  static std::string figure(uint64_t bytes, bool human) {
    return human ? formatBytes(bytes) : std::to_string(bytes);
  }

  Globals& globals;
  OutputOptions output;
  WatchOptions watch;
};

}  // namespace

std::unique_ptr<Command> newPeersCommand(Globals& globals) {
  return std::make_unique<PeersCommand>(globals);
}

}  // namespace refstore::tools
