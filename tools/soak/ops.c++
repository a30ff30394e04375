#include "tools/soak/ops.h"

#include <algorithm>
#include <memory>

namespace refstore::soak {
namespace {

const std::set<std::string> kLostCodes = {"OWNER_LOST", "UNREACHABLE", "WRONG_STORE"};

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string joined(const std::vector<uint64_t>& numbers) {
  if (numbers.empty()) return "-";
  std::string text;
  for (uint64_t n: numbers) text += (text.empty() ? "" : ",") + std::to_string(n);
  return text;
}

}  // namespace

// --- Reply, Expectation ------------------------------------------------------------------

Reply Reply::parse(const std::string& line, double receivedAt) {
  Reply reply;
  reply.receivedAt = receivedAt;
  auto space = line.find(' ');
  std::string head = line.substr(0, space);
  std::string rest = space == std::string::npos ? "" : line.substr(space + 1);
  if (head == "ok") {
    reply.kind = OK;
    reply.word = rest;
  } else if (head == "err") {
    reply.kind = ERR;
    auto next = rest.find(' ');
    reply.word = rest.substr(0, next);
    reply.message = next == std::string::npos ? "" : rest.substr(next + 1);
  } else if (head == "bad") {
    reply.kind = BAD;
    reply.message = rest;
  } else {
    reply.kind = BAD;
    reply.message = "unreadable answer: " + line;
  }
  return reply;
}

std::string Reply::text() const {
  switch (kind) {
    case OK: return word.empty() ? "ok" : "ok " + word;
    case ERR: return "err " + word + " " + message;
    case BAD: return "bad " + message;
    case NONE: return "(no answer)";
  }
  return "";
}

Verdict Expectation::judge(const Reply& reply) const {
  auto expected = [&]() {
    std::string text = success ? "ok" : "";
    for (auto& code: codes) text += (text.empty() ? "" : "|") + code;
    if (lost) text += std::string(text.empty() ? "" : "|") + "a lost owner's codes";
    if (disconnected) text += "|DISCONNECTED";
    return "expected " + (text.empty() ? std::string("nothing") : text);
  };
  switch (reply.kind) {
    case Reply::OK:
      if (success) return {Verdict::GOOD, ""};
      return {Verdict::UNEXPECTED, expected()};
    case Reply::ERR:
      if (codes.count(reply.word)) return {Verdict::EXPECTED_ERROR, ""};
      if (lost && kLostCodes.count(reply.word)) return {Verdict::LOST_ERROR, ""};
      if (disconnected && (reply.word == "DISCONNECTED" || kLostCodes.count(reply.word))) {
        return {Verdict::LOST_ERROR, ""};
      }
      return {Verdict::UNEXPECTED, expected()};
    case Reply::BAD: return {Verdict::UNEXPECTED, "wrong answer"};
    case Reply::NONE: return {Verdict::UNEXPECTED, "no answer"};
  }
  return {Verdict::UNEXPECTED, "?"};
}

// --- choosing ----------------------------------------------------------------------------

void Planner::newRound(double time) {
  now = time;
  namesInUse.clear();
  round++;
}

Op Planner::plan(int id) {
  WorkerModel& w = model.workers.at(id);
  struct Weighted {
    Builder build;
    int weight;
  };
  bool crowded = w.handles.size() > 32;
  const Weighted table[] = {
      {&Planner::put, 10},           {&Planner::create, 2},         {&Planner::sealShare, 3},
      {&Planner::share, 12},         {&Planner::restore, 16},       {&Planner::restoreView, 4},
      {&Planner::read, 16},          {&Planner::readMany, 3},       {&Planner::poll, 2},
      {&Planner::drop, crowded ? 60 : 12},                          {&Planner::children, 4},
      {&Planner::name, 3},           {&Planner::nameTaken, 1},      {&Planner::lookup, 3},
      {&Planner::lookupMissing, 1},  {&Planner::unname, 3},         {&Planner::promise, 4},
      {&Planner::fulfill, 3},        {&Planner::fulfillWith, 2},    {&Planner::reject, 1},
      {&Planner::breakPromise, 1},   {&Planner::cycle, 1},          {&Planner::adopt, 5},
      {&Planner::restoreExpired, 1}, {&Planner::restoreUsedUp, 1},  {&Planner::restoreForged, 1},
      {&Planner::restoreMalformed, 1},
  };
  int total = 0;
  for (auto& entry: table) total += entry.weight;
  // A choice whose preconditions do not hold (nothing to read, no token) yields an empty op:
  // choose again. put always works.
  for (int attempt = 0; attempt < 20; attempt++) {
    int draw = int(rng.below(total));
    for (auto& entry: table) {
      if (draw < entry.weight) {
        Op op = (this->*entry.build)(w);
        if (!op.command.empty()) {
          op.worker = id;
          op.sentAt = now;
          return op;
        }
        break;
      }
      draw -= entry.weight;
    }
  }
  Op op = put(w);
  op.worker = id;
  op.sentAt = now;
  return op;
}

// --- helpers ----------------------------------------------------------------------------

uint64_t Planner::seedOf(uint64_t value) const { return mix(options.runSeed ^ mix(value)); }

uint64_t Planner::smallSize() {
  uint64_t draw = rng.below(100);
  if (draw < 70) return rng.between(1, 4096);
  if (draw < 95) return rng.between(4097, 256 << 10);
  return rng.between(256 << 10, 1 << 20);
}

bool Planner::randomHandle(WorkerModel& w, const std::function<bool(const Handle&)>& fits,
                           Handle* out) {
  std::vector<uint64_t> candidates;
  for (uint64_t handle: w.handles) {
    if (fits(model.handles.at(handle))) candidates.push_back(handle);
  }
  if (candidates.empty()) return false;
  *out = model.handles.at(candidates[rng.below(candidates.size())]);
  return true;
}

std::string Planner::childrenOf(WorkerModel& w, std::vector<uint64_t>* values,
                                const std::function<bool(uint64_t)>& allowed) {
  std::vector<uint64_t> handles;
  std::vector<uint64_t> candidates;
  for (uint64_t handle: w.handles) {
    if (allowed(model.handles.at(handle).value)) candidates.push_back(handle);
  }
  uint64_t count = std::min<uint64_t>(candidates.size(), rng.between(1, 3));
  for (uint64_t i = 0; i < count; i++) {
    uint64_t at = rng.below(candidates.size());
    handles.push_back(candidates[at]);
    values->push_back(model.handles.at(candidates[at]).value);
    candidates.erase(candidates.begin() + at);
  }
  return joined(handles);
}

Token* Planner::usableToken(int host) {
  std::vector<Token*> elsewhere, here;
  for (Token& token: model.tokens) {
    if (!token.surelyValidAt(now, 2.0) || token.usesLeft == 0) continue;
    (token.owner.host == host ? here : elsewhere).push_back(&token);
  }
  std::vector<Token*>& pool = (!elsewhere.empty() && (here.empty() || rng.chance(0.8)))
                                  ? elsewhere : here;
  if (pool.empty()) return nullptr;
  Token* token = pool[rng.below(pool.size())];
  if (token->usesLeft > 0) token->usesLeft--;
  token->usedInRound = round;
  return token;
}

Token* Planner::tokenWhere(const std::function<bool(const Token&)>& fits) {
  std::vector<Token*> pool;
  for (Token& token: model.tokens) {
    if (fits(token)) pool.push_back(&token);
  }
  if (pool.empty()) return nullptr;
  return pool[rng.below(pool.size())];
}

bool Planner::freeName(int host, std::string* out) {
  std::vector<std::string> pool;
  for (auto& [name, entry]: model.hosts.at(host).names) {
    if (!entry.uncertain && !namesInUse.count(name)) pool.push_back(name);
  }
  if (pool.empty()) return false;
  *out = pool[rng.below(pool.size())];
  namesInUse.insert(*out);
  return true;
}

bool Planner::fulfillerWithOwnRef(WorkerModel& w, uint64_t* fulfiller, uint64_t* promise) {
  std::vector<std::pair<uint64_t, uint64_t>> pool;
  for (auto& [f, p]: w.fulfillers) {
    bool held = false;
    for (uint64_t handle: w.handles) held |= model.handles.at(handle).value == p;
    if (held) pool.emplace_back(f, p);
  }
  if (pool.empty()) return false;
  auto chosen = pool[rng.below(pool.size())];
  *fulfiller = chosen.first;
  *promise = chosen.second;
  return true;
}

uint64_t Planner::newValue(WorkerModel& w, uint64_t size, const std::vector<uint64_t>& kids) {
  uint64_t id = model.newId();
  Value& value = model.values[id];
  value.id = id;
  value.owner = model.current(w.host);
  value.outcomes = {Outcome{Outcome::BYTES, size, seedOf(id), 0}};
  value.children = kids;
  return id;
}

Expectation Planner::restoreExpectation(const Token& token, bool ownerDeadAtPlan, double sentAt,
                                        double receivedAt) const {
  Expectation e;
  e.lost = model.dead(token.owner);
  if (ownerDeadAtPlan) e.success = false;  // nobody can answer for it
  if (sentAt > token.mintedBefore + token.ttl + 1.5) {
    e.success = false;
    e.codes = {"EXPIRED", "NOT_FOUND"};
  } else if (receivedAt >= token.mintedAfter + token.ttl) {
    e.codes = {"EXPIRED", "NOT_FOUND"};  // it may have expired on the way
  }
  return e;
}

void Planner::tokenCutShort(const std::string& text) {
  for (Token& token: model.tokens) {
    if (token.text == text) token.usesUncertain = true;
  }
}

// --- values ------------------------------------------------------------------------------

Op Planner::put(WorkerModel& w) {
  std::vector<uint64_t> kids;
  std::string kidList =
      rng.chance(0.3) ? childrenOf(w, &kids, [](uint64_t) { return true; }) : "-";
  uint64_t size = smallSize();
  uint64_t value = newValue(w, size, kids);
  uint64_t handle = model.newId();
  Op op;
  op.kind = kids.empty() ? "put" : "put+children";
  op.command = "put " + std::to_string(handle) + " " + std::to_string(size) + " " +
               std::to_string(seedOf(value)) + " " + kidList;
  int worker = w.id;
  op.apply = [this, worker, handle, value](const Reply& r) {
    if (r.kind == Reply::OK) model.hold(worker, handle, value);
  };
  op.expect = [this, kids]() {
    Expectation e;
    for (uint64_t kid: kids) e.lost |= model.lostDeep(kid);
    return e;
  };
  return op;
}

Op Planner::create(WorkerModel& w) {
  std::vector<uint64_t> kids;
  std::string kidList =
      rng.chance(0.2) ? childrenOf(w, &kids, [](uint64_t) { return true; }) : "-";
  uint64_t size = rng.chance(0.7) ? rng.between(1 << 20, options.largeMax)
                                  : rng.between(64 << 10, 1 << 20);
  uint64_t value = newValue(w, size, kids);
  uint64_t handle = model.newId();
  Op op;
  op.kind = "create";
  op.command = "create " + std::to_string(handle) + " " + std::to_string(size) + " " +
               std::to_string(seedOf(value)) + " " + kidList;
  int worker = w.id;
  op.apply = [this, worker, handle, value](const Reply& r) {
    if (r.kind == Reply::OK) model.hold(worker, handle, value);
  };
  op.expect = [this, kids]() {
    Expectation e;
    for (uint64_t kid: kids) e.lost |= model.lostDeep(kid);
    return e;
  };
  return op;
}

Op Planner::sealShare(WorkerModel& w) {
  uint64_t size = rng.between(1, 2 << 20);
  uint64_t value = newValue(w, size, {});
  uint64_t handle = model.newId();
  uint32_t ttl = uint32_t(rng.between(2, 10));
  uint32_t uses = rng.chance(0.5) ? 0 : uint32_t(rng.between(1, 3));
  Op op;
  op.kind = "sealshare";
  op.command = "sealshare " + std::to_string(handle) + " " + std::to_string(size) + " " +
               std::to_string(seedOf(value)) + " " + std::to_string(ttl) + " " +
               std::to_string(uses);
  int worker = w.id;
  Owner owner = model.current(w.host);
  double sentAt = now;
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    model.hold(worker, handle, value);
    model.tokens.push_back(Token{r.word, value, owner, sentAt, r.receivedAt, ttl,
                                 uses == 0 ? -1 : int(uses)});
  };
  return op;
}

Op Planner::share(WorkerModel& w) {
  Handle h;
  if (!randomHandle(w, [](const Handle&) { return true; }, &h)) return {};
  uint32_t ttl = uint32_t(rng.between(2, 10));
  uint32_t uses = rng.chance(0.5) ? 0 : uint32_t(rng.between(1, 3));
  Op op;
  op.kind = "share";
  op.command = "share " + std::to_string(h.id) + " " + std::to_string(ttl) + " " +
               std::to_string(uses);
  Owner owner = model.values.at(h.value).owner;
  op.kind = owner.host == w.host ? "share" : "share-proxy";
  uint64_t value = h.value;
  double sentAt = now;
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    model.tokens.push_back(Token{r.word, value, owner, sentAt, r.receivedAt, ttl,
                                 uses == 0 ? -1 : int(uses)});
  };
  op.expect = [this, owner]() {
    Expectation e;
    e.lost = model.dead(owner);  // a proxy's share asks its owner
    return e;
  };
  return op;
}

Op Planner::restore(WorkerModel& w) {
  Token* token = usableToken(w.host);
  if (token == nullptr) return {};
  uint64_t handle = model.newId();
  Op op;
  op.kind = token->owner.host == w.host ? "restore" : "restore-remote";
  op.command = "restore " + std::to_string(handle) + " " + token->text;
  int worker = w.id;
  Token copy = *token;
  bool deadAtPlan = model.dead(token->owner);
  double sentAt = now;
  auto receivedAt = std::make_shared<double>(0);
  op.apply = [=](const Reply& r) {
    *receivedAt = r.receivedAt;
    if (r.kind == Reply::OK) model.hold(worker, handle, copy.value);
  };
  op.expect = [=]() { return restoreExpectation(copy, deadAtPlan, sentAt, *receivedAt); };
  op.cutShort = [this, copy]() { tokenCutShort(copy.text); };
  return op;
}

Op Planner::restoreView(WorkerModel& w) {
  // Only tokens of settled values: a view of a pending promise would wait.
  std::vector<Token*> pool;
  for (Token& token: model.tokens) {
    if (token.surelyValidAt(now, 2.0) && token.usesLeft != 0 &&
        !model.resolve(token.value).pending) {
      pool.push_back(&token);
    }
  }
  if (pool.empty()) return {};
  std::vector<Token*> elsewhere;
  for (Token* token: pool) {
    if (token->owner.host != w.host) elsewhere.push_back(token);
  }
  if (!elsewhere.empty() && rng.chance(0.8)) pool = elsewhere;
  Token* token = pool[rng.below(pool.size())];
  if (token->usesLeft > 0) token->usesLeft--;
  token->usedInRound = round;
  Resolution res = model.resolve(token->value);
  Outcome bytes = res.bytes ? *res.bytes : Outcome{};
  Op op;
  op.kind = "restoreview";
  op.command = "restoreview " + token->text + " " + std::to_string(bytes.size) + " " +
               std::to_string(bytes.seed);
  Token copy = *token;
  bool deadAtPlan = model.dead(token->owner);
  double sentAt = now;
  auto receivedAt = std::make_shared<double>(0);
  op.apply = [receivedAt](const Reply& r) { *receivedAt = r.receivedAt; };
  op.expect = [=]() {
    Expectation e = restoreExpectation(copy, deadAtPlan, sentAt, *receivedAt);
    Resolution now = model.resolve(copy.value);
    if (!now.bytes) e.success = false;
    if (now.rejected) e.codes.insert("REJECTED");
    if (now.broken) e.codes.insert("BROKEN_PROMISE");
    e.lost |= now.lost;
    return e;
  };
  op.cutShort = [this, copy]() { tokenCutShort(copy.text); };
  return op;
}

Op Planner::read(WorkerModel& w) {
  Handle h;
  if (!randomHandle(w, [&](const Handle& h) { return !model.resolve(h.value).pending; }, &h)) {
    return {};
  }
  Resolution res = model.resolve(h.value);
  std::string id = std::to_string(h.id);
  Op op;
  if (!res.bytes) {
    op.kind = "read-failed";
    op.command = "readall " + id + " 0 0";
  } else {
    std::string expected = std::to_string(res.bytes->size) + " " + std::to_string(res.bytes->seed);
    uint64_t draw = rng.below(10);
    if (draw < 4) {
      op.kind = "view";
      op.command = "view " + id + " " + expected;
    } else if (draw < 7) {
      op.kind = "readall";
      op.command = "readall " + id + " " + expected;
    } else {
      uint64_t offset = rng.below(res.bytes->size);
      uint64_t length = rng.between(1, std::min<uint64_t>(res.bytes->size - offset, 1 << 20));
      op.kind = "slice";
      op.command = "slice " + id + " " + expected + " " + std::to_string(offset) + " " +
                   std::to_string(length);
    }
  }
  if (model.values.at(h.value).owner.host != w.host) op.kind += "-proxy";
  uint64_t value = h.value;
  op.expect = [this, value]() {
    Resolution now = model.resolve(value);
    Expectation e;
    e.success = bool(now.bytes);
    if (now.rejected) e.codes.insert("REJECTED");
    if (now.broken) e.codes.insert("BROKEN_PROMISE");
    e.lost = now.lost;
    return e;
  };
  return op;
}

Op Planner::readMany(WorkerModel& w) {
  std::vector<uint64_t> candidates;
  for (uint64_t handle: w.handles) {
    if (model.resolve(model.handles.at(handle).value).definite()) candidates.push_back(handle);
  }
  if (candidates.size() < 2) return {};
  uint64_t count = std::min<uint64_t>(candidates.size(), rng.between(2, 5));
  std::string spec;
  std::vector<uint64_t> values;
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; i++) {
    uint64_t at = rng.below(candidates.size());
    const Handle& h = model.handles.at(candidates[at]);
    candidates.erase(candidates.begin() + at);
    Outcome bytes = *model.resolve(h.value).bytes;
    if (total + bytes.size > (8u << 20)) continue;
    total += bytes.size;
    values.push_back(h.value);
    spec += (spec.empty() ? "" : ",") + std::to_string(h.id) + ":" + std::to_string(bytes.size) +
            ":" + std::to_string(bytes.seed);
  }
  if (values.empty()) return {};
  Op op;
  op.kind = "readmany";
  op.command = "readmany " + spec;
  op.expect = [this, values]() {
    Expectation e;
    for (uint64_t value: values) e.lost |= model.resolve(value).lost;
    return e;
  };
  return op;
}

Op Planner::poll(WorkerModel& w) {
  Handle h;
  if (!randomHandle(w, [&](const Handle& h) { return model.resolve(h.value).pending; }, &h)) {
    return {};
  }
  Op op;
  op.kind = "poll";
  op.command = "poll " + std::to_string(h.id) + " 50";
  uint64_t value = h.value;
  op.expect = [this, value]() {
    Resolution now = model.resolve(value);
    Expectation e;
    e.success = bool(now.bytes);
    e.codes.insert("TIMEOUT");
    if (now.rejected) e.codes.insert("REJECTED");
    if (now.broken) e.codes.insert("BROKEN_PROMISE");
    e.lost = now.lost;
    return e;
  };
  return op;
}

Op Planner::drop(WorkerModel& w) {
  Handle h;
  if (!randomHandle(w, [](const Handle&) { return true; }, &h)) return {};
  Op op;
  op.kind = "drop";
  op.command = "drop " + std::to_string(h.id);
  uint64_t handle = h.id;
  op.apply = [this, handle](const Reply&) { model.release(handle); };
  return op;
}

Op Planner::children(WorkerModel& w) {
  auto known = [&](const Handle& h) {
    const Value& v = model.values.at(h.value);
    return v.childrenKnown && v.outcomes.size() == 1 && v.outcomes[0].kind == Outcome::BYTES;
  };
  Handle h;
  bool found = rng.chance(0.8) ? randomHandle(w, [&](const Handle& h) {
    return known(h) && !model.values.at(h.value).children.empty();
  }, &h) : false;
  if (!found && !randomHandle(w, known, &h)) return {};
  std::vector<uint64_t> kids = model.values.at(h.value).children;
  std::vector<uint64_t> handles;
  for (size_t i = 0; i < kids.size(); i++) handles.push_back(model.newId());
  Op op;
  op.kind = model.values.at(h.value).owner.host == w.host ? "children" : "children-proxy";
  op.command = "children " + std::to_string(h.id) + " " + joined(handles);
  int worker = w.id;
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    for (size_t i = 0; i < kids.size(); i++) model.hold(worker, handles[i], kids[i]);
  };
  uint64_t value = h.value;
  op.expect = [this, value]() {
    Expectation e;
    e.lost = model.lostDeep(value);
    return e;
  };
  return op;
}

// --- names -------------------------------------------------------------------------------

Op Planner::name(WorkerModel& w) {
  Handle h;
  if (!randomHandle(w, [](const Handle&) { return true; }, &h)) return {};
  std::string name = "soak/n" + std::to_string(++nameCounter);
  namesInUse.insert(name);
  Op op;
  op.kind = "name";
  op.command = "name " + std::to_string(h.id) + " " + name;
  int host = w.host;
  uint64_t value = h.value;
  op.apply = [=](const Reply& r) {
    if (r.kind == Reply::OK) model.hosts.at(host).names[name] = NameEntry{value, false};
  };
  op.cutShort = [=]() { model.hosts.at(host).names[name] = NameEntry{value, true}; };
  op.expect = [this, value]() {
    Expectation e;
    e.lost = model.dead(model.values.at(value).owner);
    return e;
  };
  return op;
}

Op Planner::nameTaken(WorkerModel& w) {
  Handle h;
  if (!randomHandle(w, [](const Handle&) { return true; }, &h)) return {};
  std::string name;
  if (!freeName(w.host, &name)) return {};
  Op op;
  op.kind = "name-taken";
  op.command = "name " + std::to_string(h.id) + " " + name;
  uint64_t value = h.value;
  op.expect = [this, value]() {
    Expectation e;
    e.success = false;
    e.codes = {"ALREADY_EXISTS"};
    e.lost = model.dead(model.values.at(value).owner);
    return e;
  };
  return op;
}

Op Planner::lookup(WorkerModel& w) {
  std::string name;
  if (!freeName(w.host, &name)) return {};
  uint64_t value = model.hosts.at(w.host).names.at(name).value;
  uint64_t handle = model.newId();
  Op op;
  op.kind = "lookup";
  op.command = "lookup " + std::to_string(handle) + " " + name;
  int worker = w.id;
  op.apply = [=](const Reply& r) {
    if (r.kind == Reply::OK) model.hold(worker, handle, value);
  };
  op.expect = [this, value]() {
    Expectation e;
    e.lost = model.dead(model.values.at(value).owner);
    return e;
  };
  return op;
}

Op Planner::lookupMissing(WorkerModel&) {
  Op op;
  op.kind = "lookup-missing";
  op.command = "lookup " + std::to_string(model.newId()) + " soak/missing" +
               std::to_string(++nameCounter);
  op.expect = []() {
    Expectation e;
    e.success = false;
    e.codes = {"NOT_FOUND"};
    return e;
  };
  return op;
}

Op Planner::unname(WorkerModel& w) {
  std::string name;
  if (!freeName(w.host, &name)) return {};
  Op op;
  op.kind = "unname";
  op.command = "unname " + name;
  int host = w.host;
  std::string text = name;
  op.apply = [=](const Reply& r) {
    if (r.kind == Reply::OK) model.hosts.at(host).names.erase(text);
  };
  op.cutShort = [=]() {
    auto& names = model.hosts.at(host).names;
    if (names.count(text)) names.at(text).uncertain = true;
  };
  return op;
}

// --- promises ----------------------------------------------------------------------------

Op Planner::promise(WorkerModel& w) {
  uint64_t value = model.newId();
  Value& p = model.values[value];
  p.id = value;
  p.owner = model.current(w.host);
  p.promise = true;
  p.outcomes = {Outcome{Outcome::PENDING}};
  uint64_t handle = model.newId(), fulfiller = model.newId();
  Op op;
  op.kind = "promise";
  op.command = "promise " + std::to_string(handle) + " " + std::to_string(fulfiller);
  int worker = w.id;
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    model.hold(worker, handle, value);
    model.workers.at(worker).fulfillers[fulfiller] = value;
  };
  return op;
}

Op Planner::fulfill(WorkerModel& w) {
  uint64_t fulfiller, promise;
  if (!fulfillerWithOwnRef(w, &fulfiller, &promise)) return {};
  std::vector<uint64_t> kids;
  std::string kidList = rng.chance(0.3) ? childrenOf(w, &kids, [&](uint64_t value) {
    return !model.contains(value, promise);
  }) : "-";
  uint64_t size = smallSize();
  uint64_t seed = seedOf(promise);
  Op op;
  op.kind = "fulfill";
  op.command = "fulfill " + std::to_string(fulfiller) + " " + std::to_string(size) + " " +
               std::to_string(seed) + " " + kidList;
  int worker = w.id;
  Outcome bytes{Outcome::BYTES, size, seed, 0};
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    Value& p = model.values.at(promise);
    p.outcomes = {bytes};
    p.children = kids;
    model.workers.at(worker).fulfillers.erase(fulfiller);
  };
  op.cutShort = [=]() {
    Value& p = model.values.at(promise);
    p.outcomes = {bytes, Outcome{Outcome::PENDING}};
    p.children = kids;
    p.childrenKnown = false;
  };
  op.expect = [this, kids]() {
    Expectation e;
    for (uint64_t kid: kids) e.lost |= model.lostDeep(kid);
    return e;
  };
  return op;
}

Op Planner::fulfillWith(WorkerModel& w) {
  uint64_t fulfiller, promise;
  if (!fulfillerWithOwnRef(w, &fulfiller, &promise)) return {};
  Handle target;
  if (!randomHandle(w, [&](const Handle& h) { return !model.contains(h.value, promise); },
                    &target)) {
    return {};
  }
  Op op;
  op.kind = model.values.at(target.value).owner.host == w.host ? "fulfillwith"
                                                               : "fulfillwith-proxy";
  op.command = "fulfillwith " + std::to_string(fulfiller) + " " + std::to_string(target.id);
  int worker = w.id;
  Outcome alias{Outcome::ALIAS, 0, 0, target.value};
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    model.values.at(promise).outcomes = {alias};
    model.workers.at(worker).fulfillers.erase(fulfiller);
  };
  op.cutShort = [=]() {
    model.values.at(promise).outcomes = {alias, Outcome{Outcome::PENDING}};
  };
  uint64_t value = target.value;
  op.expect = [this, value]() {
    Expectation e;
    e.lost = model.lostDeep(value);
    return e;
  };
  return op;
}

Op Planner::reject(WorkerModel& w) {
  uint64_t fulfiller, promise;
  if (!fulfillerWithOwnRef(w, &fulfiller, &promise)) return {};
  Op op;
  op.kind = "reject";
  op.command = "reject " + std::to_string(fulfiller) + " soak-says-no";
  int worker = w.id;
  op.apply = [=](const Reply& r) {
    if (r.kind != Reply::OK) return;
    model.values.at(promise).outcomes = {Outcome{Outcome::REJECTED}};
    model.workers.at(worker).fulfillers.erase(fulfiller);
  };
  op.cutShort = [=]() {
    model.values.at(promise).outcomes = {Outcome{Outcome::REJECTED}, Outcome{Outcome::PENDING}};
  };
  return op;
}

Op Planner::breakPromise(WorkerModel& w) {
  if (w.fulfillers.empty()) return {};
  auto it = w.fulfillers.begin();
  std::advance(it, rng.below(w.fulfillers.size()));
  uint64_t fulfiller = it->first, promise = it->second;
  Op op;
  op.kind = "break";
  op.command = "break " + std::to_string(fulfiller);
  int worker = w.id;
  op.apply = [=](const Reply&) {
    model.values.at(promise).outcomes = {Outcome{Outcome::BROKEN}};
    model.workers.at(worker).fulfillers.erase(fulfiller);
  };
  return op;
}

Op Planner::cycle(WorkerModel& w) {
  uint64_t fulfiller, promise;
  if (!fulfillerWithOwnRef(w, &fulfiller, &promise)) return {};
  Owner owner = model.values.at(promise).owner;
  Handle target;
  if (!randomHandle(w, [&](const Handle& h) {
        return model.containsLocally(h.value, promise, owner);
      }, &target)) {
    return {};
  }
  Op op;
  op.kind = "cycle";
  op.command = "fulfillwith " + std::to_string(fulfiller) + " " + std::to_string(target.id);
  op.expect = []() {
    Expectation e;
    e.success = false;
    e.codes = {"CYCLE"};
    return e;
  };
  return op;
}

// --- tokens ------------------------------------------------------------------------------

Op Planner::adopt(WorkerModel& w) {
  // Through another connection to our own daemon, or a TCP client of another host's daemon
  // (a Ref handed over by a process on that host, as in a service's own Cap'n Proto schema).
  std::vector<int> others;
  for (int host = 0; host < options.hosts; host++) {
    if (host != w.host && model.hosts.at(host).up) others.push_back(host);
  }
  int via = (!others.empty() && rng.chance(0.6)) ? others[rng.below(others.size())] : -1;
  Token* token = usableToken(via >= 0 ? via : w.host);
  if (token == nullptr) return {};
  uint64_t handle = model.newId();
  Op op;
  op.kind = via >= 0 ? "adopt-remote" : "adopt";
  op.command = "adopt " + std::to_string(handle) + " " + token->text + " " +
               (via >= 0 ? options.tcpAddresses.at(via) : "-");
  int worker = w.id;
  Token copy = *token;
  bool deadAtPlan = model.dead(token->owner);
  Owner viaDaemon = via >= 0 ? model.current(via) : Owner{};
  double sentAt = now;
  auto receivedAt = std::make_shared<double>(0);
  op.apply = [=](const Reply& r) {
    *receivedAt = r.receivedAt;
    if (r.kind == Reply::OK) model.hold(worker, handle, copy.value);
  };
  op.expect = [=]() {
    Expectation e = restoreExpectation(copy, deadAtPlan, sentAt, *receivedAt);
    if (via >= 0 && model.dead(viaDaemon)) e.disconnected = true;
    return e;
  };
  op.cutShort = [this, copy]() { tokenCutShort(copy.text); };
  return op;
}

Op Planner::restoreExpired(WorkerModel&) {
  double at = now;
  Token* token = tokenWhere([at](const Token& t) { return t.surelyExpiredAt(at); });
  if (token == nullptr) return {};
  uint64_t handle = model.newId();
  Op op;
  op.kind = "restore-expired";
  op.command = "restore " + std::to_string(handle) + " " + token->text;
  Owner owner = token->owner;
  op.expect = [this, owner]() {
    Expectation e;
    e.success = false;
    e.codes = {"EXPIRED", "NOT_FOUND"};
    e.lost = model.dead(owner);
    return e;
  };
  return op;
}

Op Planner::restoreUsedUp(WorkerModel&) {
  uint64_t thisRound = round;
  Token* token = tokenWhere([thisRound](const Token& t) {
    return t.usesLeft == 0 && !t.usesUncertain && t.usedInRound < thisRound;
  });
  if (token == nullptr) return {};
  uint64_t handle = model.newId();
  Op op;
  op.kind = "restore-usedup";
  op.command = "restore " + std::to_string(handle) + " " + token->text;
  Owner owner = token->owner;
  op.expect = [this, owner]() {
    Expectation e;
    e.success = false;
    e.codes = {"NOT_FOUND", "EXPIRED"};
    e.lost = model.dead(owner);
    return e;
  };
  return op;
}

Op Planner::restoreForged(WorkerModel&) {
  double at = now;
  Token* token = tokenWhere([at](const Token& t) { return t.surelyValidAt(at, 2.0); });
  if (token == nullptr) return {};
  std::string forged = token->text;
  size_t at_ = forged.find('@');
  size_t flip = (at_ == std::string::npos ? forged.size() : at_) - 1;
  forged[flip] = forged[flip] == '0' ? '1' : '0';
  uint64_t handle = model.newId();
  Op op;
  op.kind = "restore-forged";
  op.command = "restore " + std::to_string(handle) + " " + forged;
  Owner owner = token->owner;
  op.expect = [this, owner]() {
    Expectation e;
    e.success = false;
    e.codes = {"NOT_FOUND"};
    e.lost = model.dead(owner);
    return e;
  };
  return op;
}

Op Planner::restoreMalformed(WorkerModel&) {
  Op op;
  op.kind = "restore-malformed";
  op.command = "restore " + std::to_string(model.newId()) + " rs2.this-is-no-token";
  op.expect = []() {
    Expectation e;
    e.success = false;
    e.codes = {"MALFORMED"};
    return e;
  };
  return op;
}

}  // namespace refstore::soak
