#include "tools/soak/soak.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

namespace refstore::soak {
namespace {

// An op that has not answered after this long is a hang (workers wait for promises 60 s).
constexpr double kRoundDeadlineSeconds = 120;
// The most unexpected answers worth running on for: the first ones say what is wrong.
constexpr uint64_t kGiveUpAfter = 20;
// Peer heartbeats and timeouts much shorter than the defaults, so that a killed daemon is
// noticed within a round or two and the final wait is short.
constexpr int kHeartbeatMs = 250, kPeerTimeoutMs = 1500;
// The longest a token can outlive the run: ops.c++ mints tokens of 2-10 s, but the daemons mint
// single-use 60-s tokens themselves to move a Ref between them (adopt, children of a proxy), and
// one whose call was cut short by a kill is never redeemed and lives out its 60 s.
constexpr uint32_t kMaxTokenTtl = 60;

volatile sig_atomic_t interrupted = 0;
void onInterrupt(int) { interrupted = 1; }

double monotonic() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string tail(const std::string& text, size_t lines) {
  size_t at = text.size();
  for (size_t n = 0; n <= lines && at > 0; n++) {
    at = text.rfind('\n', at - 1);
    if (at == std::string::npos) return text;
  }
  return text.substr(at + 1);
}

// Whether process `pid` is still running, without reaping it (its exit status stays for
// Host::stop to report).
bool processRunning(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return !(paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Everything a daemon should be back to when nothing references anything any more.
std::vector<std::pair<std::string, uint64_t>> leftoverCounters(const Stats& s, uint64_t baseline) {
  std::vector<std::pair<std::string, uint64_t>> all = {
      {"objects", s.objects},
      {"holders", s.holders},
      {"tokens", s.tokens},
      {"names", s.names},
      {"proxies", s.proxies},
      {"proxyBytes", s.proxyBytes},
      {"remoteHolders", s.remoteHolders},
      {"detachedHolders", s.detachedHolders},
      {"pinnedDead", s.pinnedDead},
      {"pullsInFlight", s.pullsInFlight},
      {"queueLength", s.queueLength},
      {"bytesUsed over baseline", s.bytesUsed > baseline ? s.bytesUsed - baseline : 0},
      {"bytesUsed under baseline", s.bytesUsed < baseline ? baseline - s.bytesUsed : 0},
  };
  std::vector<std::pair<std::string, uint64_t>> nonzero;
  for (auto& counter: all) {
    if (counter.second != 0) nonzero.push_back(counter);
  }
  return nonzero;
}

}  // namespace

Soak::Soak(SoakOptions options)
    : options(std::move(options)),
      model(this->options.hosts),
      opsRng(this->options.seed),
      chaosRng(this->options.seed ^ 0xC4A05C4A05ull),
      baselineBytes(this->options.hosts, 0),
      restartAtRound(this->options.hosts, -1) {
  runDir = this->options.logDir.empty()
               ? "/tmp/soak-" + std::to_string(this->options.seed) + "-" + std::to_string(getpid())
               : this->options.logDir;
  std::filesystem::create_directories(runDir);
  journalFile = fopen((runDir + "/ops.log").c_str(), "w");
  // When the daemons are to be killed: rounds given, rounds spread over a fixed number of
  // rounds, or moments spread over the time (the rounds they fell on are printed, so that
  // --rounds and --daemon-kill-rounds repeat the run).
  Rng schedule(this->options.seed ^ 0x5C4ED01Eull);
  auto& rounds = this->options.daemonKillRounds;
  if (rounds.empty() && this->options.rounds > 0) {
    for (int i = 0; i < this->options.daemonKills; i++) {
      rounds.push_back(this->options.rounds * (i + 1) / (this->options.daemonKills + 1) +
                       schedule.below(this->options.rounds / 10 + 1));
    }
    std::sort(rounds.begin(), rounds.end());
  } else if (rounds.empty()) {
    for (int i = 0; i < this->options.daemonKills; i++) {
      double share = (i + 1.0) / (this->options.daemonKills + 1);
      double jitter = 0.85 + 0.3 * double(schedule.below(1000)) / 1000;
      daemonKillTimes.push_back(this->options.seconds * share * jitter);
    }
    std::sort(daemonKillTimes.begin(), daemonKillTimes.end());
  }
}

Soak::~Soak() {
  workers.clear();
  if (journalFile) fclose(journalFile);
}

void Soak::journal(const std::string& line) {
  if (journalFile) fprintf(journalFile, "%s\n", line.c_str());
  if (options.verbose) fprintf(stderr, "%s\n", line.c_str());
}

std::string Soak::reproduce() const {
  std::string kills;
  for (uint64_t r: tally.daemonKillRounds) kills += (kills.empty() ? "" : ",") + std::to_string(r);
  std::string text = "bazel run //tools/soak -- --hosts " + std::to_string(options.hosts) +
                     " --workers " + std::to_string(options.workersPerHost) + " --seed " +
                     std::to_string(options.seed) + " --rounds " + std::to_string(tally.rounds);
  text += " --daemon-kill-rounds " + (kills.empty() ? std::string("none") : kills);
  if (options.network == testing::Network::NAMESPACES) text += " --network namespaces";
  return text;
}

// --- hosts and workers --------------------------------------------------------------------

void Soak::startHosts() {
  // tests/hosts.h puts its logs, spill directories and secret under $TEST_TMPDIR.
  setenv("TEST_TMPDIR", runDir.c_str(), 1);
  testing::HostsOptions hostsOptions;
  hostsOptions.count = size_t(options.hosts);
  hostsOptions.network = options.network;
  hostsOptions.memory = options.memory;
  hostsOptions.extraArgs = {"--heartbeat-ms", std::to_string(kHeartbeatMs),
                            "--peer-timeout-ms", std::to_string(kPeerTimeoutMs),
                            "--peer-grace-ms", std::to_string(options.peerGraceMs)};
  hosts = std::make_unique<testing::Hosts>(hostsOptions);
  PlanOptions plan;
  plan.runSeed = options.seed;
  plan.hosts = options.hosts;
  plan.largeMax = options.largeMax;
  for (int i = 0; i < options.hosts; i++) {
    plan.tcpAddresses.push_back("tcp:" + (*hosts)[i].tcpAddress());
    baselineBytes[i] = Client::connect((*hosts)[i].socket()).stats().bytesUsed;
  }
  planner = std::make_unique<Planner>(model, opsRng, plan);
}

void Soak::startWorker(int host) {
  testing::Host& h = (*hosts)[host];
  int id = nextWorker++;
  std::vector<std::string> command = h.commandPrefix();
  for (auto& word: std::vector<std::string>{
           "tools/soak/soak_worker", "--socket", h.socket(), "--secret-file",
           hosts->secretFile(), "--label", "soak-w" + std::to_string(id)}) {
    command.push_back(word);
  }
  Worker worker;
  worker.id = id;
  worker.host = host;
  worker.process = std::make_unique<WorkerProcess>(
      command, runDir + "/worker-" + std::to_string(id) + ".log");
  workers.push_back(std::move(worker));
  WorkerModel& m = model.workers[id];
  m.id = id;
  m.host = host;
  tally.workersStarted++;
}

void Soak::refillWorkers() {
  for (int host = 0; host < options.hosts; host++) {
    if (!model.hosts[host].up) continue;
    int count = 0;
    for (auto& w: workers) count += w.host == host;
    while (count++ < options.workersPerHost) startWorker(host);
  }
}

bool Soak::daemonsAlive() {
  bool alive = true;
  for (int host = 0; host < options.hosts; host++) {
    if (!model.hosts[host].up || processRunning((*hosts)[host].pid())) continue;
    int status = (*hosts)[host].kill(SIGKILL);  // reaps it
    tally.failures.push_back("h" + std::to_string(host) + "'s refstored died by itself (" +
                             describeStatus(status) + ") in round " + std::to_string(round) +
                             "; the end of its log:\n" + tail((*hosts)[host].log(), 30));
    model.hostDied(host);
    alive = false;
  }
  return alive;
}

void Soak::restartDaemon(int host) {
  (*hosts)[host].restart();
  model.hostRestarted(host);
  baselineBytes[host] = Client::connect((*hosts)[host].socket()).stats().bytesUsed;
  restartAtRound[host] = -1;
  journal("r" + std::to_string(round) + " restarted h" + std::to_string(host));
}

// --- kills --------------------------------------------------------------------------------

bool Soak::dueDaemonKill(double elapsed) {
  bool due;
  if (!options.daemonKillRounds.empty()) {
    due = nextDaemonKill < options.daemonKillRounds.size() &&
          round >= options.daemonKillRounds[nextDaemonKill];
  } else {
    due = nextDaemonKill < daemonKillTimes.size() && elapsed >= daemonKillTimes[nextDaemonKill];
  }
  if (!due) return false;
  int up = 0;
  for (auto& host: model.hosts) up += host.up;
  return up >= 2;  // someone must be left to check
}

void Soak::killWorker(int id, std::vector<InFlight>& ops) {
  auto found = std::find_if(workers.begin(), workers.end(), [&](auto& w) { return w.id == id; });
  if (found == workers.end()) return;
  found->process->kill();
  for (auto& flight: ops) {
    if (flight.op.worker == id && !flight.cutShort) {
      flight.cutShort = true;
      flight.op.cutShort();
    }
  }
  model.workerGone(id);
  workers.erase(found);
}

void Soak::killDaemon(int host, std::vector<InFlight>& ops) {
  (*hosts)[host].kill(SIGKILL);
  std::vector<int> victims;
  for (auto& w: workers) {
    if (w.host == host) victims.push_back(w.id);
  }
  for (int id: victims) killWorker(id, ops);
  model.hostDied(host);
  restartAtRound[host] = int64_t(round + options.restartRounds);
  nextDaemonKill++;
  tally.daemonKills.push_back("round " + std::to_string(round) + ": h" + std::to_string(host));
  tally.daemonKillRounds.push_back(round);
  journal("r" + std::to_string(round) + " SIGKILL h" + std::to_string(host) + "'s refstored");
}

// --- rounds -------------------------------------------------------------------------------

void Soak::collect(std::vector<InFlight>& ops) {
  double deadline = monotonic() + kRoundDeadlineSeconds;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<size_t> which;
    for (size_t i = 0; i < ops.size(); i++) {
      if (ops[i].cutShort || ops[i].reply.kind != Reply::NONE) continue;
      auto w = std::find_if(workers.begin(), workers.end(),
                            [&](auto& w) { return w.id == ops[i].op.worker; });
      std::string line;
      if (w->process->readLine(&line)) {
        ops[i].reply = Reply::parse(line, monotonic());
        continue;
      }
      if (w->process->closed()) {
        int status = w->process->wait();
        tally.failures.push_back("worker w" + std::to_string(w->id) + " exited (" +
                                 describeStatus(status) + ") during \"" + ops[i].op.command +
                                 "\"; its log:\n" + tail(readFile(w->process->logPath()), 10));
        killWorker(w->id, ops);
        continue;
      }
      fds.push_back(pollfd{w->process->stdoutFd(), POLLIN, 0});
      which.push_back(i);
    }
    if (fds.empty()) return;
    if (monotonic() > deadline) {
      for (size_t i: which) {
        tally.recordUnexpected("round " + std::to_string(round) + " w" +
                               std::to_string(ops[i].op.worker) + ": no answer in " +
                               std::to_string(int(kRoundDeadlineSeconds)) + " s to \"" +
                               ops[i].op.command + "\" (a hang; the worker is killed)");
        killWorker(ops[i].op.worker, ops);
      }
      return;
    }
    poll(fds.data(), fds.size(), 100);
  }
}

void Soak::runRound() {
  round++;
  double now = monotonic();
  for (int host = 0; host < options.hosts; host++) {
    if (restartAtRound[host] >= 0 && round >= uint64_t(restartAtRound[host])) {
      restartDaemon(host);
    }
  }
  refillWorkers();
  model.pruneTokens(now);
  planner->newRound(now);

  int killHost = -1;
  if (dueDaemonKill(now - started)) {
    std::vector<int> up;
    for (int host = 0; host < options.hosts; host++) {
      if (model.hosts[host].up) up.push_back(host);
    }
    killHost = up[chaosRng.below(up.size())];
  }
  int killWorkerId = -1;
  if (chaosRng.chance(options.workerKillChance)) {
    std::vector<int> candidates;
    for (auto& w: workers) {
      if (w.host != killHost) candidates.push_back(w.id);
    }
    if (!candidates.empty()) killWorkerId = candidates[chaosRng.below(candidates.size())];
  }
  int killDelayMs = int(chaosRng.below(30));

  std::vector<InFlight> ops;
  std::sort(workers.begin(), workers.end(), [](auto& a, auto& b) { return a.id < b.id; });
  for (auto& w: workers) {
    InFlight flight;
    flight.op = planner->plan(w.id);
    w.process->send(flight.op.command);  // a dead worker shows as a closed stdout in collect()
    ops.push_back(std::move(flight));
  }
  if (killHost >= 0 || killWorkerId >= 0) {
    usleep(killDelayMs * 1000);
    if (killWorkerId >= 0) {
      killWorker(killWorkerId, ops);
      tally.workerKills++;
      journal("r" + std::to_string(round) + " SIGKILL w" + std::to_string(killWorkerId));
    }
    if (killHost >= 0) killDaemon(killHost, ops);
  }
  collect(ops);

  // Every answer's effects first, then the judgements: an op is judged by the state the whole
  // round left (a daemon killed during it has made its values lost for everyone's ops).
  for (auto& flight: ops) {
    if (!flight.cutShort) flight.op.apply(flight.reply);
  }
  for (auto& flight: ops) {
    tally.ops++;
    tally.opsByKind[flight.op.kind]++;
    const WorkerModel& w = model.workers.at(flight.op.worker);
    std::string where = "r" + std::to_string(round) + " w" + std::to_string(w.id) + "@h" +
                        std::to_string(w.host) + " " + flight.op.command;
    if (flight.cutShort) {
      journal(where + " -> (killed)");
      continue;
    }
    Verdict verdict = flight.op.expect().judge(flight.reply);
    switch (verdict.kind) {
      case Verdict::GOOD: break;
      case Verdict::EXPECTED_ERROR: tally.expectedErrors[flight.reply.word]++; break;
      case Verdict::LOST_ERROR: tally.lostErrors[flight.reply.word]++; break;
      case Verdict::UNEXPECTED:
        tally.recordUnexpected(where + " -> " + flight.reply.text() + " (" + verdict.why + ")");
        fprintf(stderr, "UNEXPECTED: %s -> %s (%s)\n", where.c_str(), flight.reply.text().c_str(),
                verdict.why.c_str());
        break;
    }
    journal(where + " -> " + flight.reply.text() +
            (verdict.kind == Verdict::UNEXPECTED ? "  UNEXPECTED: " + verdict.why : ""));
  }
  tally.rounds = round;
}

// --- the end ------------------------------------------------------------------------------

void Soak::finish() {
  // Half the workers quit (dropping everything they hold), the others are killed.
  std::vector<Worker*> quitting;
  for (auto& w: workers) {
    if (chaosRng.chance(0.5)) {
      w.process->send("quit");
      quitting.push_back(&w);
    } else {
      w.process->kill();
      tally.workerKills++;
    }
  }
  double deadline = monotonic() + 60;
  for (Worker* w: quitting) {
    std::string line;
    while (!w->process->readLine(&line) && !w->process->closed() && monotonic() < deadline) {
      pollfd fd{w->process->stdoutFd(), POLLIN, 0};
      poll(&fd, 1, 100);
    }
    if (line != "ok") {
      tally.failures.push_back("w" + std::to_string(w->id) + " answered \"" + line +
                               "\" to quit");
      w->process->kill();
      continue;
    }
    int status = w->process->wait();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      tally.failures.push_back("w" + std::to_string(w->id) + " quit with " +
                               describeStatus(status));
    }
    tally.workersQuit++;
  }
  for (auto& w: workers) model.workerGone(w.id);
  workers.clear();

  // Names are the one manual part of memory management: remove them all.
  for (int host = 0; host < options.hosts; host++) {
    if (!model.hosts[host].up) continue;
    Client client = Client::connect((*hosts)[host].socket());
    for (auto& [name, entry]: model.hosts[host].names) {
      try {
        client.unname(name);
      } catch (const Error& e) {
        if (!(entry.uncertain && e.code() == ErrorCode::NOT_FOUND)) {
          tally.recordUnexpected("final unname " + name + " on h" + std::to_string(host) +
                                 ": " + e.what());
        }
      }
    }
    for (auto& binding: client.names()) {
      tally.leftovers.push_back("h" + std::to_string(host) + ": name " + binding.name +
                                " nobody made");
      client.unname(binding.name);
    }
    model.hosts[host].names.clear();
  }
  waitForIdle();
}

void Soak::waitForIdle() {
  // Tokens expire, a killed host's references are dropped after the grace period (its peers
  // notice it gone within the peer timeout), and some slack for a loaded machine.
  double deadline = monotonic() + kMaxTokenTtl + (kPeerTimeoutMs + options.peerGraceMs) / 1000.0 +
                    30;
  for (;;) {
    bool idle = true;
    for (int host = 0; host < options.hosts && idle; host++) {
      if (!model.hosts[host].up) continue;
      Stats stats = Client::connect((*hosts)[host].socket()).stats();
      idle = leftoverCounters(stats, baselineBytes[host]).empty();
    }
    if (idle) return;
    if (monotonic() > deadline) break;
    usleep(200 * 1000);
  }
  for (int host = 0; host < options.hosts; host++) {
    if (!model.hosts[host].up) continue;
    std::string left = describeLeftovers(host);
    if (!left.empty()) tally.leftovers.push_back(left);
  }
}

std::string Soak::describeLeftovers(int host) {
  Client client = Client::connect((*hosts)[host].socket());
  auto counters = leftoverCounters(client.stats(), baselineBytes[host]);
  if (counters.empty()) return "";
  std::string text = "h" + std::to_string(host) + ":";
  for (auto& [name, value]: counters) text += " " + name + " " + std::to_string(value);
  // The objects themselves, in full on stderr (and the first few in the summary).
  fprintf(stderr, "--- h%d still holds:\n", host);
  int shown = 0;
  for (auto& row: client.list()) {
    std::string line = row.info.id.hex() + " " + row.info.state + " " +
                       std::to_string(row.info.size) + " B, " +
                       std::to_string(row.holderCount) + " holders";
    for (auto& holder: row.holders) {
      line += holder.peerOrigin ? " [peer " + std::to_string(holder.peerOrigin) +
                                      (holder.detached ? " detached" : "") + "]"
                                : " [" + holder.label + "]";
    }
    line += ", " + std::to_string(row.tokens) + " tokens, " + std::to_string(row.pins) +
            " pins, " + std::to_string(row.parents.size()) + " parents, " +
            std::to_string(row.children.size()) + " children";
    if (!row.ownerAddress.empty()) {
      line += ", proxy of " + row.ownerAddress + (row.bytesLocal ? " (bytes here)" : "") +
              (row.ownerLost ? " (owner lost)" : "");
    }
    fprintf(stderr, "  %s\n", line.c_str());
    if (shown++ < 3) text += "; " + line;
  }
  for (auto& peer: client.peers()) {
    fprintf(stderr, "  peer %s %s %s: held by it %llu, held from it %llu\n",
            peer.address.c_str(), peer.state.c_str(), peer.outgoing ? "out" : "in",
            (unsigned long long)peer.heldByPeer, (unsigned long long)peer.heldFromPeer);
  }
  return text;
}

void Soak::stopDaemons() {
  for (int host = 0; host < options.hosts; host++) {
    testing::Host& h = (*hosts)[host];
    if (!model.hosts[host].up) {
      unlink(h.socket().c_str());  // a killed daemon's socket file
      continue;
    }
    int status = h.stop();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      tally.failures.push_back("h" + std::to_string(host) + "'s refstored did not exit cleanly ("
                               + describeStatus(status) + "); the end of its log:\n" +
                               tail(h.log(), 30));
    }
  }
}

int Soak::run() {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, onInterrupt);
  signal(SIGTERM, onInterrupt);
  try {
    startHosts();
  } catch (const std::exception& e) {
    fprintf(stderr, "soak: the hosts did not start: %s\n", e.what());
    return 2;
  }
  started = monotonic();
  fprintf(stderr, "soak: seed %llu, %d hosts (%s), %d workers each, logs in %s\n",
          (unsigned long long)options.seed, options.hosts, testing::networkName(options.network),
          options.workersPerHost, runDir.c_str());
  double lastReport = started;
  try {
    for (;;) {
      if (interrupted || tally.unexpected >= kGiveUpAfter) break;
      if (options.rounds > 0 ? round >= options.rounds : monotonic() - started >= options.seconds) {
        break;
      }
      if (!daemonsAlive()) break;
      runRound();
      if (monotonic() - lastReport >= 10) {
        lastReport = monotonic();
        fprintf(stderr, "soak: %.0f s, %llu rounds, %llu ops, %llu unexpected\n",
                lastReport - started, (unsigned long long)tally.rounds,
                (unsigned long long)tally.ops, (unsigned long long)tally.unexpected);
      }
    }
    finish();
  } catch (const std::exception& e) {
    tally.failures.push_back(std::string("the soak itself failed: ") + e.what());
    workers.clear();
  }
  double elapsed = monotonic() - started;
  stopDaemons();
  hosts.reset();

  for (auto& failure: tally.failures) fprintf(stderr, "FAILURE: %s\n", failure.c_str());
  for (auto& detail: tally.unexpectedDetails) fprintf(stderr, "UNEXPECTED: %s\n", detail.c_str());
  std::string summary =
      tally.summary(options.seed, options.hosts, testing::networkName(options.network), elapsed);
  journal(summary);
  printf("%s\n", summary.c_str());
  if (tally.failed()) {
    printf("soak: logs (daemons, workers, ops.log) in %s\nsoak: to repeat: %s\n",
           runDir.c_str(), reproduce().c_str());
    return 1;
  }
  if (!options.keepLogs) {
    if (journalFile) fclose(journalFile);
    journalFile = nullptr;
    std::filesystem::remove_all(runDir);
  } else {
    printf("soak: logs in %s\n", runDir.c_str());
  }
  return 0;
}

}  // namespace refstore::soak
