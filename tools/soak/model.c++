#include "tools/soak/model.h"

#include <algorithm>
#include <stdexcept>

namespace refstore::soak {
namespace {

// The model never makes cycles, so a chain this long means it has a bug.
constexpr int kMaxDepth = 10000;

}  // namespace

Model::Model(int count): hosts(count) {}

Resolution Model::resolve(uint64_t value) const {
  Resolution out;
  resolveInto(value, out, 0);
  return out;
}

void Model::resolveInto(uint64_t id, Resolution& out, int depth) const {
  if (depth > kMaxDepth) throw std::logic_error("soak model: alias chain too long");
  const Value& value = values.at(id);
  if (dead(value.owner)) out.lost = true;
  for (const Outcome& outcome: value.outcomes) {
    switch (outcome.kind) {
      case Outcome::PENDING: out.pending = true; break;
      case Outcome::BYTES: out.bytes = outcome; break;
      case Outcome::ALIAS: resolveInto(outcome.alias, out, depth + 1); break;
      case Outcome::REJECTED: out.rejected = true; break;
      case Outcome::BROKEN: out.broken = true; break;
    }
  }
}

bool Model::lostDeep(uint64_t id) const {
  std::vector<uint64_t> stack = {id};
  std::set<uint64_t> seen;
  while (!stack.empty()) {
    uint64_t next = stack.back();
    stack.pop_back();
    if (!seen.insert(next).second) continue;
    const Value& value = values.at(next);
    if (dead(value.owner)) return true;
    for (uint64_t child: value.children) stack.push_back(child);
    for (const Outcome& outcome: value.outcomes) {
      if (outcome.kind == Outcome::ALIAS) stack.push_back(outcome.alias);
    }
  }
  return false;
}

bool Model::contains(uint64_t outer, uint64_t inner) const {
  std::vector<uint64_t> stack = {outer};
  std::set<uint64_t> seen;
  while (!stack.empty()) {
    uint64_t next = stack.back();
    stack.pop_back();
    if (next == inner) return true;
    if (!seen.insert(next).second) continue;
    const Value& value = values.at(next);
    for (uint64_t child: value.children) stack.push_back(child);
    for (const Outcome& outcome: value.outcomes) {
      if (outcome.kind == Outcome::ALIAS) stack.push_back(outcome.alias);
    }
  }
  return false;
}

bool Model::containsLocally(uint64_t outer, uint64_t inner, const Owner& owner) const {
  std::vector<uint64_t> stack = {outer};
  std::set<uint64_t> seen;
  while (!stack.empty()) {
    uint64_t next = stack.back();
    stack.pop_back();
    const Value& value = values.at(next);
    if (!(value.owner == owner)) continue;
    if (next == inner) return true;
    if (!seen.insert(next).second) continue;
    for (uint64_t child: value.children) stack.push_back(child);
    for (const Outcome& outcome: value.outcomes) {
      if (outcome.kind == Outcome::ALIAS) stack.push_back(outcome.alias);
    }
  }
  return false;
}

void Model::hold(int worker, uint64_t handle, uint64_t value) {
  handles[handle] = Handle{handle, worker, value};
  workers.at(worker).handles.insert(handle);
}

void Model::release(uint64_t handle) {
  auto found = handles.find(handle);
  if (found == handles.end()) return;
  workers.at(found->second.worker).handles.erase(handle);
  handles.erase(found);
}

void Model::workerGone(int id) {
  WorkerModel& worker = workers.at(id);
  if (!worker.alive) return;
  worker.alive = false;
  for (uint64_t handle: worker.handles) handles.erase(handle);
  worker.handles.clear();
  // Its Fulfillers go with its connection: the daemon breaks every promise still pending.
  for (auto& [fulfiller, promise]: worker.fulfillers) {
    for (Outcome& outcome: values.at(promise).outcomes) {
      if (outcome.kind == Outcome::PENDING) outcome.kind = Outcome::BROKEN;
    }
  }
  worker.fulfillers.clear();
}

void Model::hostDied(int host) {
  hosts.at(host).up = false;
  hosts.at(host).names.clear();
  for (auto& [id, worker]: workers) {
    if (worker.host == host) workerGone(id);
  }
}

void Model::hostRestarted(int host) {
  hosts.at(host).incarnation++;
  hosts.at(host).up = true;
}

void Model::pruneTokens(double now) {
  tokens.erase(std::remove_if(tokens.begin(), tokens.end(),
                              [&](const Token& token) {
                                return now > token.mintedBefore + token.ttl + 10;
                              }),
               tokens.end());
}

}  // namespace refstore::soak
