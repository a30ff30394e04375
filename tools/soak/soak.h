// The soak coordinator (tools/soak/README.md): N refstored hosts (tests/hosts.h), worker
// processes on each, rounds of random ops across hosts judged against the model, client and
// daemon SIGKILLs, and at the end a check that every surviving daemon holds nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/hosts.h"
#include "tools/soak/model.h"
#include "tools/soak/ops.h"
#include "tools/soak/tally.h"
#include "tools/soak/worker_process.h"

namespace refstore::soak {

struct SoakOptions {
  int hosts = 4;
  int workersPerHost = 2;
  double seconds = 60;         // how long to run ops (unless `rounds` is set)
  uint64_t rounds = 0;         // > 0: exactly this many rounds, whatever the time
  uint64_t seed = 0;
  testing::Network network = testing::Network::LOOPBACK;
  int daemonKills = 2;
  std::vector<uint64_t> daemonKillRounds;  // given: kill a daemon at these rounds instead
  uint64_t restartRounds = 25;  // a killed host's daemon is restarted this many rounds later
  double workerKillChance = 0.04;  // per round
  std::string memory = "256M";     // each daemon's --memory
  uint64_t largeMax = 4u << 20;    // largest value made with create
  int peerGraceMs = 3000;
  std::string logDir;              // "": /tmp/soak-<seed>-<pid>
  bool keepLogs = false;
  bool verbose = false;            // every op on stderr as well as in ops.log
};

class Soak {
 public:
  explicit Soak(SoakOptions options);
  ~Soak();
  // Runs the whole soak; returns the process exit code (0: passed).
  int run();

 private:
  struct Worker {
    int id = 0;
    int host = 0;
    std::unique_ptr<WorkerProcess> process;
  };
  struct InFlight {
    Op op;
    Reply reply;
    bool cutShort = false;
  };

  void startHosts();
  void startWorker(int host);
  void refillWorkers();
  bool daemonsAlive();
  bool dueDaemonKill(double elapsed);
  void runRound();
  void collect(std::vector<InFlight>& ops);
  void killWorker(int id, std::vector<InFlight>& ops);
  void killDaemon(int host, std::vector<InFlight>& ops);
  void restartDaemon(int host);
  void finish();
  void waitForIdle();
  std::string describeLeftovers(int host);
  void stopDaemons();
  void journal(const std::string& line);
  std::string reproduce() const;

  SoakOptions options;
  std::string runDir;
  std::unique_ptr<testing::Hosts> hosts;
  Model model;
  Rng opsRng, chaosRng;
  std::unique_ptr<Planner> planner;
  std::vector<Worker> workers;  // live ones
  int nextWorker = 0;
  std::vector<uint64_t> baselineBytes;
  std::vector<int64_t> restartAtRound;  // -1: none pending
  std::vector<double> daemonKillTimes;  // seconds into the run (time mode)
  size_t nextDaemonKill = 0;
  double started = 0;
  uint64_t round = 0;
  FILE* journalFile = nullptr;
  Tally tally;
};

}  // namespace refstore::soak
