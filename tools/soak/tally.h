// What the soak counts: ops by kind, answers by error code (expected, or caused by a killed
// owner), the unexpected ones in full, kills; and the one-line summary printed at the end.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace refstore::soak {

struct Tally {
  uint64_t rounds = 0, ops = 0;
  std::map<std::string, uint64_t> opsByKind;
  std::map<std::string, uint64_t> expectedErrors;  // asked for: EXPIRED, CYCLE, TIMEOUT, ...
  std::map<std::string, uint64_t> lostErrors;      // a killed owner: OWNER_LOST, UNREACHABLE, ...
  uint64_t unexpected = 0;
  std::vector<std::string> unexpectedDetails;      // the first few, in full
  uint64_t workerKills = 0, workersStarted = 0, workersQuit = 0;
  std::vector<std::string> daemonKills;            // "round 412: h2"
  std::vector<uint64_t> daemonKillRounds;
  std::vector<std::string> leftovers;              // what the daemons still hold at the end
  std::vector<std::string> failures;               // crashes, hangs, unclean exits

  void recordUnexpected(const std::string& detail);
  bool failed() const { return unexpected > 0 || !leftovers.empty() || !failures.empty(); }
  // "put 1200, restore 900, ..." sorted by count.
  static std::string counts(const std::map<std::string, uint64_t>& counts);
  std::string summary(uint64_t seed, int hosts, const std::string& network, double seconds) const;
};

}  // namespace refstore::soak
