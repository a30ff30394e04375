// What the soak coordinator believes the cluster holds: every value made (and what reading it
// must give), the share tokens minted, the names, and which worker holds which Ref and
// Fulfiller. Ops (ops.h) are chosen from it and their answers judged against it. It is never
// told anything by the daemons: a daemon that disagrees with it has a bug (or the soak has).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace refstore::soak {

// The daemon of one host between two restarts: a value belongs to it, and dies with it.
struct Owner {
  int host = 0;
  int incarnation = 0;
  bool operator==(const Owner& other) const {
    return host == other.host && incarnation == other.incarnation;
  }
};

// One way a value can turn out. A plain value has exactly one, BYTES; a promise starts PENDING
// and settles once. A promise whose fulfiller was killed while settling it has two (what it
// tried, or BROKEN): the coordinator cannot know which happened, so either is right.
struct Outcome {
  enum Kind { PENDING, BYTES, ALIAS, REJECTED, BROKEN };
  Kind kind = BYTES;
  uint64_t size = 0, seed = 0;  // BYTES: the pattern (tests/daemon.h fillPattern)
  uint64_t alias = 0;           // ALIAS: the value it reads as (Fulfiller::fulfillWith)
};

struct Value {
  uint64_t id = 0;
  Owner owner;
  bool promise = false;
  std::vector<Outcome> outcomes;
  std::vector<uint64_t> children;  // values, in the order they were given
  bool childrenKnown = true;       // false when a fulfil with children may or may not have happened
};

// What reading a value may give, following aliases.
struct Resolution {
  bool pending = false;   // it may not be settled yet: a blocking read could wait forever
  bool rejected = false, broken = false;
  std::optional<Outcome> bytes;  // the BYTES it may read as (at most one per value)
  bool lost = false;      // a value on the way belongs to a dead daemon: OWNER_LOST is fine
  // Exactly one possibility, BYTES: what readMany needs.
  bool definite() const { return bytes && !pending && !rejected && !broken; }
};

struct Token {
  std::string text;
  uint64_t value = 0;
  Owner owner;                         // tokens always name the value's owner
  double mintedAfter = 0, mintedBefore = 0;  // coordinator clock around the share
  uint32_t ttl = 0;
  int usesLeft = -1;                   // -1: unlimited
  bool usesUncertain = false;          // a restore of it was cut short by a kill
  uint64_t usedInRound = 0;            // the last round an op was given one of its uses
  // Sure to restore when asked at `now`: time left, uses left (reserving one).
  bool surelyValidAt(double now, double margin) const { return now + margin < mintedAfter + ttl; }
  bool surelyExpiredAt(double now) const { return now > mintedBefore + ttl + 1.5; }
};

struct Handle {
  uint64_t id = 0;
  int worker = 0;
  uint64_t value = 0;
};

struct NameEntry {
  uint64_t value = 0;
  bool uncertain = false;  // a kill cut short the call that made or removed it
};

struct HostModel {
  int incarnation = 0;
  bool up = true;
  std::map<std::string, NameEntry> names;
};

struct WorkerModel {
  int id = 0;
  int host = 0;
  bool alive = true;
  std::set<uint64_t> handles;              // Ref handles it holds
  std::map<uint64_t, uint64_t> fulfillers;  // Fulfiller handle -> promise value
};

class Model {
 public:
  explicit Model(int hosts);

  std::vector<HostModel> hosts;
  std::map<uint64_t, Value> values;
  std::map<uint64_t, Handle> handles;
  std::map<int, WorkerModel> workers;
  std::vector<Token> tokens;

  uint64_t newId() { return ++lastId; }

  bool dead(const Owner& owner) const {
    const HostModel& host = hosts.at(owner.host);
    return !host.up || host.incarnation != owner.incarnation;
  }
  Owner current(int host) const { return Owner{host, hosts.at(host).incarnation}; }

  // What reading `value` may give.
  Resolution resolve(uint64_t value) const;
  // Whether `value`, or anything it contains or aliases, belongs to a dead daemon.
  bool lostDeep(uint64_t value) const;
  // Whether `inner` is `outer` or is contained in it (children and aliases, transitively).
  bool contains(uint64_t outer, uint64_t inner) const;
  // Whether `inner` is reachable from `outer` through values all owned by `owner` (a cycle
  // through them is one that daemon can see for itself).
  bool containsLocally(uint64_t outer, uint64_t inner, const Owner& owner) const;

  // A worker's holdings.
  void hold(int worker, uint64_t handle, uint64_t value);
  void release(uint64_t handle);
  // A worker is gone (killed, or quit): its Refs with it, and its unsettled promises broken.
  void workerGone(int worker);
  // A host's daemon died: its workers, names and values with it.
  void hostDied(int host);
  void hostRestarted(int host);
  // Drops tokens nobody can use any more.
  void pruneTokens(double now);

 private:
  void resolveInto(uint64_t value, Resolution& out, int depth) const;
  uint64_t lastId = 0;
};

}  // namespace refstore::soak
