// The soak's operations: what a worker is told to do next (one command line of
// tools/soak/worker_main.c++), chosen at random from what the model says it holds, and how its
// answer is judged. Every op of a round runs concurrently with the others, so an op never
// depends on another op of the same round; its answer is judged once the whole round is over
// (a daemon killed during the round has made the values it owned lost by then).
#pragma once

#include <functional>
#include <random>
#include <set>
#include <string>

#include "tools/soak/model.h"

namespace refstore::soak {

// A seeded random source whose draws are the same on every platform (no std distributions).
class Rng {
 public:
  explicit Rng(uint64_t seed): engine(seed) {}
  uint64_t next() { return engine(); }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : engine() % n; }
  uint64_t between(uint64_t low, uint64_t high) { return low + below(high - low + 1); }
  bool chance(double p) { return double(engine() >> 11) / double(1ull << 53) < p; }

 private:
  std::mt19937_64 engine;
};

// A worker's answer to one command.
struct Reply {
  enum Kind { OK, ERR, BAD, NONE };  // NONE: no answer (the worker is gone)
  Kind kind = NONE;
  std::string word;     // after "ok": a token or count; after "err": the code
  std::string message;  // the rest of the line
  double receivedAt = 0;
  static Reply parse(const std::string& line, double receivedAt);
  std::string text() const;
};

struct Verdict {
  enum Kind { GOOD, EXPECTED_ERROR, LOST_ERROR, UNEXPECTED };
  Kind kind = GOOD;
  std::string why;  // UNEXPECTED: what was expected instead
};

// Which answers are right.
struct Expectation {
  bool success = true;          // "ok" is right
  std::set<std::string> codes;  // error codes that are right (the op asked for them)
  bool lost = false;            // a dead owner is involved: OWNER_LOST, UNREACHABLE, WRONG_STORE
  bool disconnected = false;    // a daemon the op dialed died this round: DISCONNECTED too
  Verdict judge(const Reply& reply) const;
};

struct Op {
  int worker = 0;
  std::string kind;     // for the tallies: "put", "restore", ...
  std::string command;  // the line sent to the worker
  double sentAt = 0;
  // Effects on the model of the answer the worker gave (called for every answer).
  std::function<void(const Reply&)> apply = [](const Reply&) {};
  // What answers are right, asked once every op of the round has been applied.
  std::function<Expectation()> expect = []() { return Expectation{}; };
  // The worker was killed before answering: whatever the op may have done is uncertain.
  std::function<void()> cutShort = []() {};
};

struct PlanOptions {
  uint64_t runSeed = 0;
  int hosts = 0;
  std::vector<std::string> tcpAddresses;  // "tcp:ip:port" of each host's daemon
  uint64_t largeMax = 4u << 20;
};

// Chooses ops. Holds per-round reservations (names used, tokens handed out) until newRound().
class Planner {
 public:
  Planner(Model& model, Rng& rng, PlanOptions options)
      : model(model), rng(rng), options(std::move(options)) {}

  void newRound(double now);
  Op plan(int worker);

 private:
  using Builder = Op (Planner::*)(WorkerModel&);
  Op put(WorkerModel& w);
  Op create(WorkerModel& w);
  Op sealShare(WorkerModel& w);
  Op share(WorkerModel& w);
  Op restore(WorkerModel& w);
  Op restoreView(WorkerModel& w);
  Op read(WorkerModel& w);
  Op readMany(WorkerModel& w);
  Op poll(WorkerModel& w);
  Op drop(WorkerModel& w);
  Op children(WorkerModel& w);
  Op name(WorkerModel& w);
  Op nameTaken(WorkerModel& w);
  Op lookup(WorkerModel& w);
  Op lookupMissing(WorkerModel& w);
  Op unname(WorkerModel& w);
  Op promise(WorkerModel& w);
  Op fulfill(WorkerModel& w);
  Op fulfillWith(WorkerModel& w);
  Op reject(WorkerModel& w);
  Op breakPromise(WorkerModel& w);
  Op cycle(WorkerModel& w);
  Op adopt(WorkerModel& w);
  Op restoreExpired(WorkerModel& w);
  Op restoreUsedUp(WorkerModel& w);
  Op restoreForged(WorkerModel& w);
  Op restoreMalformed(WorkerModel& w);

  // Helpers. Each returns false (or 0) when nothing fits.
  uint64_t seedOf(uint64_t value) const;
  uint64_t smallSize();
  bool randomHandle(WorkerModel& w, const std::function<bool(const Handle&)>& fits,
                    Handle* out);
  std::string childrenOf(WorkerModel& w, std::vector<uint64_t>* values,
                         const std::function<bool(uint64_t)>& allowed);
  // A token to restore on host `host`: one sure to be valid, one use reserved. Prefers
  // tokens of other hosts.
  Token* usableToken(int host);
  Token* tokenWhere(const std::function<bool(const Token&)>& fits);
  // A name on `host` no other op of this round touches (reserved for this one).
  bool freeName(int host, std::string* out);
  bool fulfillerWithOwnRef(WorkerModel& w, uint64_t* fulfiller, uint64_t* promise);
  // The op that makes a new value (owner: the worker's host daemon) and holds it as `handle`.
  uint64_t newValue(WorkerModel& w, uint64_t size, const std::vector<uint64_t>& kids);
  // Judging a restore of `token` (also adopt and restoreview).
  Expectation restoreExpectation(const Token& token, bool ownerDeadAtPlan, double sentAt,
                                 double receivedAt) const;
  void tokenCutShort(const std::string& text);

  Model& model;
  Rng& rng;
  PlanOptions options;
  double now = 0;
  std::set<std::string> namesInUse;  // names some op of this round touches
  uint64_t nameCounter = 0;
  uint64_t round = 0;
};

}  // namespace refstore::soak
