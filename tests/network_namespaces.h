// Test support: a small switched network of Linux network namespaces, one per "host", for
// many-host tests that run as root. Host i's namespace has an `eth0` (a veth pair) whose other
// end is port `h<i>` of a bridge in a separate switch namespace, and the address
// 10.<a>.<b>.<i+1>/24.
// Nothing is created in the caller's own namespace, so deleting the namespaces removes every
// interface with them.
//
// Names are `rst-<id>-h<i>` and `rst-<id>-sw`, `<id>` random per network. The destructor removes
// them; a SIGTERM/SIGINT/SIGHUP/SIGABRT of the test removes their names at once (the kernel frees
// them when their last process exits); after a SIGKILL, the next network created removes what
// is left (a network is alive while its process holds the lock file /tmp/rst-netns-<id>.lock).
//
// Needs root and the `ip` tool (iproute2); `tc` for shaping, `nft` (nftables) for dropping.
// Under Bazel's sandbox `ip netns add` fails: such tests are tagged "local".
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <optional>
#include <string>
#include <vector>

namespace refstore::testing {

class NamespaceNetwork {
 public:
  // Why network namespaces cannot be used here, or "" when they can (root, `ip` present, and a
  // probe namespace could be created and deleted). Probed once per process.
  static std::string unavailable();
  // Removes namespaces (and their processes) left by runs whose process is gone; returns how
  // many namespaces it removed. Called by the constructor.
  static size_t removeStale();

  // Creates the switch and `hosts` host namespaces, all links up. Throws std::runtime_error
  // naming the failing command.
  explicit NamespaceNetwork(size_t hosts);
  ~NamespaceNetwork();  // kills what still runs in the namespaces, then deletes them
  NamespaceNetwork(const NamespaceNetwork&) = delete;

  const std::string& id() const { return networkId; }
  size_t size() const { return hostCount; }
  std::string name(size_t host) const;  // "rst-<id>-h<host>"
  std::string path(size_t host) const;  // "/run/netns/rst-<id>-h<host>" (for setns, nsenter)
  std::string switchName() const;       // "rst-<id>-sw"
  std::string ip(size_t host) const;    // "10.<a>.<b>.<host + 1>"
  // Words to put before a command line to run it in host's namespace (nsenter, which execs:
  // the process's pid is the command's).
  std::vector<std::string> commandPrefix(size_t host) const;
  // Makes the calling thread use host's namespace for the sockets it opens from now on.
  void enter(size_t host) const;

  // Link control. Down: the host's cable is pulled at the switch (its packets go nowhere; open
  // connections see silence, not a reset). Up: plugged back.
  void setLink(size_t host, bool up);
  // Caps the host's link at `bitsPerSecond` each way (tc tbf on both ends of its veth); 0 removes
  // the cap.
  void shape(size_t host, uint64_t bitsPerSecond);
  // Silently drops every IPv4 packet between `host` and `peer` (nftables in host's namespace,
  // both directions), or between `host` and everyone when `peer` is empty. allowTraffic() removes
  // the host's drop rules.
  void dropTraffic(size_t host, std::optional<size_t> peer = std::nullopt);
  void allowTraffic(size_t host);

  // Runs a network tool (`ip`, `tc`, `nft`, found in /usr/sbin, /usr/bin, /sbin or /bin) inside
  // host's namespace and returns its output; throws with the command and its stderr on failure.
  std::string runIn(size_t host, const std::string& tool,
                    const std::vector<std::string>& args) const;

 private:
  static std::string probeNamespaces();
  std::vector<std::string> allNames() const;
  std::vector<std::string> signalCleanupPaths() const;
  std::string networkId;
  size_t hostCount;
  uint8_t subnet[2];
  int lockFd = -1;
  std::vector<bool> dropping;
};

// Runs `argv` (argv[0] a path) with `input` on its stdin, waits, and returns its exit status
// and what it wrote to stdout and stderr.
struct CommandResult {
  int status;  // as from waitpid
  std::string output;
  std::string errors;
  bool ok() const;
};
CommandResult runCommand(const std::vector<std::string>& argv, const std::string& input = "");
// Path of a system tool ("ip", "tc", "nft", "nsenter"), or "" if it is not installed.
std::string findTool(const std::string& name);

}  // namespace refstore::testing
