// soak: a randomized multi-host soak of refstore (tools/soak/README.md).
//
//   bazel run //tools/soak -- --hosts 4 --seconds 60 --seed 7
#include <errno.h>
#include <kj/main.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include <string>

#include "tools/soak/soak.h"

namespace refstore::soak {
namespace {

// refstored and soak_worker are found relative to the runfiles root, where `bazel run` starts
// us. Started as bazel-bin/tools/soak/soak, go there first.
void enterRunfiles() {
  if (access("server/refstored", X_OK) == 0) return;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return;
  self[n] = '\0';
  std::string runfiles = std::string(self) + ".runfiles/refstore";
  if (chdir(runfiles.c_str()) != 0) return;
}

bool parseNumber(kj::StringPtr text, uint64_t* out) {
  if (text.size() == 0) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long value = strtoull(text.cStr(), &end, 10);
  if (errno != 0 || *end != '\0' || text[0] == '-') return false;
  *out = value;
  return true;
}

class SoakMain {
 public:
  explicit SoakMain(kj::ProcessContext& context): context(context) {
    uint64_t random = 0;
    if (getrandom(&random, sizeof(random), 0) == sizeof(random)) options.seed = random % 1000000;
  }

  kj::MainFunc getMain() {
    return kj::MainBuilder(
               context, "soak",
               "Randomized multi-host soak of refstore: N refstored hosts, worker processes "
               "doing random operations across them (put, share, restore elsewhere, view, "
               "drop, names, promises, nested refs, adopt), client and daemon SIGKILLs; at the "
               "end every surviving daemon must hold nothing. Prints a one-line summary; exits "
               "1 on any unexpected answer, crash or leftover. See tools/soak/README.md.")
        .addOptionWithArg({"hosts"}, KJ_BIND_METHOD(*this, setHosts), "<n>",
                          "refstored hosts (2-8, default 4).")
        .addOptionWithArg({"workers"}, KJ_BIND_METHOD(*this, setWorkers), "<n>",
                          "worker processes per host (1-8, default 2).")
        .addOptionWithArg({"seconds"}, KJ_BIND_METHOD(*this, setSeconds), "<s>",
                          "how long to run operations (default 60), then the final check.")
        .addOptionWithArg({"rounds"}, KJ_BIND_METHOD(*this, setRounds), "<n>",
                          "run exactly this many rounds instead (to repeat a run).")
        .addOptionWithArg({"seed"}, KJ_BIND_METHOD(*this, setSeed), "<n>",
                          "random seed (default: a fresh one, printed).")
        .addOptionWithArg({"network"}, KJ_BIND_METHOD(*this, setNetwork), "<kind>",
                          "loopback (default: hosts on 127.0.0.2, .3, ...) or namespaces "
                          "(each host in its own network namespace; root only).")
        .addOptionWithArg({"daemon-kills"}, KJ_BIND_METHOD(*this, setDaemonKills), "<n>",
                          "daemons to SIGKILL (and restart) during the run (default 2).")
        .addOptionWithArg({"daemon-kill-rounds"}, KJ_BIND_METHOD(*this, setKillRounds),
                          "<r,r,...>",
                          "SIGKILL a daemon at exactly these rounds (\"none\": never), as a "
                          "failed run prints.")
        .addOptionWithArg({"worker-kill-percent"}, KJ_BIND_METHOD(*this, setWorkerKills), "<p>",
                          "chance per round of SIGKILLing one worker mid-operation (default 4).")
        .addOptionWithArg({"memory"}, KJ_BIND_METHOD(*this, setMemory), "<size>",
                          "each daemon's --memory (default 256M).")
        .addOptionWithArg({"large-max"}, KJ_BIND_METHOD(*this, setLargeMax), "<MiB>",
                          "largest value made with create, in MiB (default 4; from 8, values "
                          "read on several hosts are relayed between readers).")
        .addOptionWithArg({"peer-grace-ms"}, KJ_BIND_METHOD(*this, setGrace), "<ms>",
                          "each daemon's --peer-grace-ms (default 3000).")
        .addOptionWithArg({"log-dir"}, KJ_BIND_METHOD(*this, setLogDir), "<dir>",
                          "where logs go (default /tmp/soak-<seed>-<pid>; removed after a "
                          "passing run unless --keep-logs).")
        .addOption({"keep-logs"}, KJ_BIND_METHOD(*this, setKeepLogs),
                   "keep the logs of a passing run too.")
        .addOption({"print-ops"}, KJ_BIND_METHOD(*this, setVerbose),
                   "print every operation and its answer on stderr.")
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::MainBuilder::Validity setHosts(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n < 2 || n > 8) return "--hosts must be 2 to 8";
    options.hosts = int(n);
    return true;
  }
  kj::MainBuilder::Validity setWorkers(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n < 1 || n > 8) return "--workers must be 1 to 8";
    options.workersPerHost = int(n);
    return true;
  }
  kj::MainBuilder::Validity setSeconds(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n < 1) return "--seconds must be a positive whole number";
    options.seconds = double(n);
    return true;
  }
  kj::MainBuilder::Validity setRounds(kj::StringPtr text) {
    if (!parseNumber(text, &options.rounds) || options.rounds < 1) {
      return "--rounds must be a positive whole number";
    }
    return true;
  }
  kj::MainBuilder::Validity setSeed(kj::StringPtr text) {
    if (!parseNumber(text, &options.seed)) return "--seed must be a whole number";
    return true;
  }
  kj::MainBuilder::Validity setNetwork(kj::StringPtr text) {
    if (text == "loopback") {
      options.network = testing::Network::LOOPBACK;
    } else if (text == "namespaces") {
      std::string why = testing::namespacesUnavailable();
      if (!why.empty()) return kj::str("--network namespaces is unavailable here: ", why.c_str());
      options.network = testing::Network::NAMESPACES;
    } else {
      return "--network must be loopback or namespaces";
    }
    return true;
  }
  kj::MainBuilder::Validity setDaemonKills(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n > 10) return "--daemon-kills must be 0 to 10";
    options.daemonKills = int(n);
    return true;
  }
  kj::MainBuilder::Validity setKillRounds(kj::StringPtr text) {
    options.daemonKillRounds.clear();
    killRoundsGiven = true;
    if (text == "none") return true;
    std::string list = text.cStr();
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      std::string item = list.substr(start, comma == std::string::npos ? comma : comma - start);
      uint64_t round;
      if (!parseNumber(kj::StringPtr(item.c_str()), &round) || round < 1) {
        return "--daemon-kill-rounds expects round numbers like 120,480 (or none)";
      }
      options.daemonKillRounds.push_back(round);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return true;
  }
  kj::MainBuilder::Validity setWorkerKills(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n > 100) return "--worker-kill-percent must be 0 to 100";
    options.workerKillChance = double(n) / 100;
    return true;
  }
  kj::MainBuilder::Validity setMemory(kj::StringPtr text) {
    options.memory = text.cStr();
    return true;
  }
  kj::MainBuilder::Validity setLargeMax(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n < 2 || n > 1024) return "--large-max must be 2 to 1024 (MiB)";
    options.largeMax = n << 20;
    return true;
  }
  kj::MainBuilder::Validity setGrace(kj::StringPtr text) {
    uint64_t n;
    if (!parseNumber(text, &n) || n > 600000) return "--peer-grace-ms must be 0 to 600000";
    options.peerGraceMs = int(n);
    return true;
  }
  kj::MainBuilder::Validity setLogDir(kj::StringPtr text) {
    std::string dir = text.cStr();
    // `bazel run` starts us in the runfiles: a relative path means where the user was.
    const char* userDir = getenv("BUILD_WORKING_DIRECTORY");
    if (!dir.empty() && dir[0] != '/' && userDir != nullptr) dir = std::string(userDir) + "/" + dir;
    options.logDir = dir;
    return true;
  }
  kj::MainBuilder::Validity setKeepLogs() {
    options.keepLogs = true;
    return true;
  }
  kj::MainBuilder::Validity setVerbose() {
    options.verbose = true;
    return true;
  }

  kj::MainBuilder::Validity run() {
    if (killRoundsGiven) options.daemonKills = int(options.daemonKillRounds.size());
    if (killRoundsGiven && options.daemonKillRounds.empty()) options.daemonKills = 0;
    enterRunfiles();
    if (access("server/refstored", X_OK) != 0 || access("tools/soak/soak_worker", X_OK) != 0) {
      return "cannot find server/refstored and tools/soak/soak_worker: run through "
             "`bazel run //tools/soak -- ...`";
    }
    int code = Soak(options).run();
    fflush(stdout);
    fflush(stderr);
    if (code != 0) exit(code);
    return true;
  }

  kj::ProcessContext& context;
  SoakOptions options;
  bool killRoundsGiven = false;
};

}  // namespace
}  // namespace refstore::soak

KJ_MAIN(refstore::soak::SoakMain)
