#include "tools/soak/tally.h"

#include <stdio.h>

#include <algorithm>

namespace refstore::soak {

void Tally::recordUnexpected(const std::string& detail) {
  unexpected++;
  if (unexpectedDetails.size() < 20) unexpectedDetails.push_back(detail);
}

std::string Tally::counts(const std::map<std::string, uint64_t>& counts) {
  std::vector<std::pair<std::string, uint64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string text;
  for (auto& [name, count]: sorted) {
    text += (text.empty() ? "" : ", ") + name + " " + std::to_string(count);
  }
  return text.empty() ? "none" : text;
}

std::string Tally::summary(uint64_t seed, int hosts, const std::string& network,
                           double seconds) const {
  char head[160];
  snprintf(head, sizeof(head), "soak %s: seed %llu, %d hosts (%s), %.0f s, %llu rounds, ",
           failed() ? "FAILED" : "passed", (unsigned long long)seed, hosts, network.c_str(),
           seconds, (unsigned long long)rounds);
  std::string text = head;
  text += std::to_string(ops) + " ops (" + counts(opsByKind) + "); ";
  text += "errors from killed owners: " + counts(lostErrors) + "; ";
  text += "errors asked for: " + counts(expectedErrors) + "; ";
  text += "unexpected: " + std::to_string(unexpected) + "; ";
  text += "kills: " + std::to_string(workerKills) + " workers, " +
          std::to_string(daemonKills.size()) + " daemons; ";
  text += "left: ";
  if (leftovers.empty()) {
    text += "nothing";
  } else {
    for (size_t i = 0; i < leftovers.size(); i++) text += (i ? "; " : "") + leftovers[i];
  }
  return text;
}

}  // namespace refstore::soak
