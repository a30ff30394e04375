// Fuzzes the daemon's capability servers -- Store, Ref, WriteBuffer, Fulfiller, View, Segment --
// the way clients drive them: random calls with random parameters, many in flight at once,
// pipelined Refs used before their call returns, Refs of another server (as a Level 1 proxy
// chain delivers them) passed as children, time moving in jumps. One in-process daemon per
// input: an ObjectStore over a shared-memory arena, with four connections (Unix with writable
// shared memory, Unix read-only, TCP, TCP behind a cluster secret), each a StoreServer
// reached through a capnp LocalClient, as a connection's bootstrap is.
//
// Checked:
//   - every call either succeeds or fails with a `refstore.CODE: ...` error (never INTERNAL);
//   - after every event-loop turn, the object table's invariants (checkTable);
//   - bytes read back (Ref.read, Store.readMany) and sizes (Ref.info) match what was put;
//   - at the end, with every capability dropped, names removed and tokens expired: every call
//     has completed, the table is empty and the arena has no bytes allocated.
//
// The input is a sequence of operations, one byte each (its value modulo the number of
// operations) followed by the bytes of its parameters (fuzz_input.h: past the end, zeros).
//
// REFSTORE_FUZZ_AVOID (comma-separated) keeps a long run going past known bugs not fixed yet,
// so that it can find others; kAvoidByDefault is what the tests avoid. It found these two at
// once, both fixed since (issue 21); the corpus inputs known-adopt-all and known-fulfill-invalid
// reproduce them:
//   fulfill-invalid   no Fulfiller.fulfill with an empty value (it left the promise settled
//                     forever: Fulfiller.fulfill set `settled` before checking the value)
//   bad-child-lists   child and readMany lists hold only Refs that were returned (resolved),
//                     never a foreign, broken or still pipelined one (adoptAll finished its
//                     ArrayBuilder early when one failed: "ArrayBuilder::finish() called
//                     prematurely" instead of a refstore error, and the others' holders leaked)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kj/async.h>
#include <kj/debug.h>
#include <kj/timer.h>

#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "server/rpc/services.h"
#include "server/rpc/store_server.h"
#include "server/shm/jemalloc_arena.h"
#include "server/store/object_store.h"
#include "server/store/token.h"

using namespace refstore;
using namespace refstore::server;
using refstore::fuzz::FuzzInput;

namespace {

constexpr uint64_t kOrigin = 0x5eed;
constexpr uint64_t kCapacity = 16ull << 20;
constexpr uint64_t kSegmentSize = 4ull << 20;
constexpr size_t kMaxOps = 400;
constexpr uint8_t kOperations = 38;  // Session::step
constexpr const char* kSecret = "cluster-secret";

struct Avoid {
  bool fulfillInvalid = false;
  bool badChildLists = false;
};

constexpr const char* kAvoidByDefault = "";

Avoid readAvoid() {
  Avoid avoid;
  const char* env = getenv("REFSTORE_FUZZ_AVOID");
  std::string list = env ? env : kAvoidByDefault;
  avoid.fulfillInvalid = list.find("fulfill-invalid") != std::string::npos;
  avoid.badChildLists = list.find("bad-child-lists") != std::string::npos;
  return avoid;
}

// What lives for the whole process: the event loop, and what the environment asks to avoid.
struct World {
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
  Avoid avoid = readAvoid();
};

World& world() {
  static World* instance = new World;  // never destroyed: libFuzzer exits without unwinding
  return *instance;
}

[[noreturn]] void fail(kj::StringPtr what) {
  fprintf(stderr, "store_rpc_fuzz: %s\n", what.cStr());
  fflush(stderr);
  abort();
}

// Every error a client can see names its code (server/runtime/errors.h).
void checkError(const kj::Exception& e) {
  kj::StringPtr description = e.getDescription();
  if (!description.startsWith("refstore.") || description.startsWith("refstore.INTERNAL")) {
    fail(kj::str("a call failed without a refstore error code: ", e));
  }
}

// A Ref and, when known, the bytes it refers to.
struct RefEntry {
  proto::Ref::Client cap;
  std::shared_ptr<const std::string> value;  // null: not tracked
  bool returned;  // a call's result, not a pipelined promise (which may yet break)
};

class Session;

// A Ref served by someone else (another process, reached through a proxy chain): the daemon
// can only adopt it by asking it to share() itself.
class ForeignRef final: public proto::Ref::Server {
 public:
  enum Kind : uint8_t { PROXY, GARBAGE_TOKEN, THROWS };
  ForeignRef(Kind kind, kj::Maybe<proto::Ref::Client> target): kind(kind), target(kj::mv(target)) {}

  kj::Promise<void> share(ShareContext context) override {
    switch (kind) {
      case PROXY:
        KJ_IF_MAYBE(real, target) {
          auto request = real->shareRequest();
          request.setTtlSeconds(context.getParams().getTtlSeconds());
          request.setUses(context.getParams().getUses());
          return context.tailCall(kj::mv(request));
        }
        break;
      case GARBAGE_TOKEN:
        context.getResults().setToken("rs1.not-a-token");
        return kj::READY_NOW;
      case THROWS:
        break;
    }
    return KJ_EXCEPTION(FAILED, "this foreign Ref refuses to share");
  }

 private:
  Kind kind;
  kj::Maybe<proto::Ref::Client> target;
};

class Session final: private kj::TaskSet::ErrorHandler {
 public:
  Session(World& world, FuzzInput& input)
      : world(world), in(input) {
    addConnection("unix", 100, 0, true, true, nullptr);
    addConnection("unix-other-uid", 101, 1000, true, false, nullptr);
    addConnection("tcp", 0, 0, false, false, nullptr);
    addConnection("tcp-secret", 0, 0, false, false, kj::StringPtr(kSecret));
  }

  void run() {
    for (size_t ops = 0; ops < kMaxOps && !in.empty(); ops++) {
      step();
      if (ops % 16 == 15) turn();
    }
    turn();
    finish();
  }

 private:
  struct Connection {
    gc::ClientId id;
    proto::Store::Client store;
  };

  World& world;
  FuzzInput& in;
  // Each input starts from the same state, so that what it does depends on it alone: a timer
  // at zero that moves only when told to, and an empty shared-memory arena of its own.
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  shm::JemallocArena arena{shm::JemallocArena::Options{kCapacity, kSegmentSize}};
  ObjectStore store{ObjectStore::Options{arena, timer, kOrigin}};
  RpcServices services{store};  // both outlive every server below
  std::vector<Connection> connections;
  std::vector<RefEntry> refs;
  std::vector<proto::WriteBuffer::Client> buffers;
  std::vector<proto::Fulfiller::Client> fulfillers;
  std::vector<proto::View::Client> views;
  std::vector<proto::Segment::Client> segments;
  std::vector<std::string> tokens;
  size_t inFlight = 0;
  bool draining = false;  // results are dropped rather than kept
  kj::TaskSet calls{*this};

  void addConnection(kj::StringPtr label, int pid, uint uid, bool sharedMemory,
                     bool writableSharedMemory, kj::Maybe<kj::StringPtr> secret) {
    gc::ClientId id = services.openConnection(ClientInfo{kj::str(label), pid, uid}, sharedMemory,
                                              writableSharedMemory);
    connections.push_back({id, kj::heap<StoreServer>(services, id, secret)});
  }

  void taskFailed(kj::Exception&& e) override { fail(kj::str("a check failed: ", e)); }

  // Tracks a call; `onResult` files what it returned. Errors are checked for their code.
  template <typename Promise, typename OnResult>
  void track(Promise&& promise, OnResult onResult) {
    inFlight++;
    calls.add(promise.then(
        [this, onResult = kj::mv(onResult)](auto&& response) mutable {
          inFlight--;
          if (!draining) onResult(response);
        },
        [this](kj::Exception&& e) {
          inFlight--;
          checkError(e);
        }));
  }
  void trackVoid(kj::Promise<void> promise) {
    inFlight++;
    calls.add(promise.then([this]() { inFlight--; },
                           [this](kj::Exception&& e) {
                             inFlight--;
                             checkError(e);
                           }));
  }

  // --- parameters ----------------------------------------------------------------------
  Connection& connection() { return connections[in.below(connections.size())]; }

  uint64_t size() {
    uint8_t kind = in.byte();
    if (kind < 200) return 1 + in.below(64);
    if (kind < 240) return 1 + in.below(4096);
    if (kind < 250) return 1 + in.below(1 << 20);
    if (kind < 253) return 1 + in.below(kCapacity);           // may wait, or be dedicated
    if (kind < 254) return 0;                                 // INVALID_ARGUMENT
    return kind == 254 ? kCapacity + 1 : (1ull << 40) + 1;    // never fits / TOO_LARGE
  }
  std::string value(uint64_t length) { return std::string(length, char('a' + in.below(26))); }
  uint32_t timeoutMs() {
    static const uint32_t choices[] = {0, 1, 50, 1000};
    return choices[in.below(4)];
  }
  kj::String name() {
    static const char* const names[] = {"a", "b", "c", "datasets/train-v1"};
    uint8_t kind = in.byte();
    if (kind < 250) return kj::str(names[kind % 4]);
    if (kind < 252) return kj::str("");
    if (kind < 254) return kj::str("has space");
    return kj::heapString(std::string(300, 'n').c_str());
  }
  kj::String token() {
    uint8_t kind = in.byte();
    if (!tokens.empty() && kind < 200) return kj::str(tokens[in.below(tokens.size())].c_str());
    if (!tokens.empty() && kind < 230) {  // a real token with one character changed
      std::string changed = tokens[in.below(tokens.size())];
      changed[in.below(changed.size())] = char(in.byte());
      if (memchr(changed.data(), 0, changed.size()) == nullptr) return kj::str(changed.c_str());
    }
    if (kind < 240) return kj::str("rs1.0000000000005eed0000000000000001.0000000000000000.",
                                   "00000000000000000000000000000000");
    if (kind < 250) {  // another daemon's, naming where it is: this one has no way to reach it
      Token foreign;
      foreign.id = {0xbeef, 1 + in.below(4)};
      foreign.lease = 1 + in.below(4);
      foreign.expiresUnixSeconds = in.flag() ? 0 : ~uint64_t(0) >> 1;
      foreign.secret = {in.u64(), in.u64()};
      foreign.ownerAddress = kj::str(in.flag() ? "10.1.2.3:7000" : "");
      return formatToken(foreign);
    }
    return kj::str("not a token");
  }
  // A Ref to pass as a parameter, and its entry in `refs` (for the value it refers to), if any.
  struct RefArgument {
    proto::Ref::Client cap;
    RefEntry* entry;
  };
  // One of ours (perhaps still a pipelined promise), a foreign one, or a broken one.
  RefArgument refParam() {
    uint8_t kind = in.byte();
    if (!refs.empty() && kind < 224) {
      RefEntry& entry = refs[in.below(refs.size())];
      return {proto::Ref::Client(entry.cap), &entry};
    }
    if (kind < 240 && !refs.empty()) {
      proto::Ref::Client target = refs[in.below(refs.size())].cap;
      return {kj::heap<ForeignRef>(ForeignRef::PROXY, kj::mv(target)), nullptr};
    }
    if (kind < 248) return {kj::heap<ForeignRef>(ForeignRef::GARBAGE_TOKEN, nullptr), nullptr};
    if (kind < 252) return {kj::heap<ForeignRef>(ForeignRef::THROWS, nullptr), nullptr};
    return {proto::Ref::Client(KJ_EXCEPTION(FAILED, "refstore.NOT_FOUND: a broken Ref")),
            nullptr};
  }
  // Up to `most` Refs for a list parameter (see REFSTORE_FUZZ_AVOID for what it leaves out).
  std::vector<RefArgument> refList(size_t most) {
    std::vector<RefArgument> chosen;
    size_t count = in.below(most + 1);
    for (size_t i = 0; i < count; i++) {
      auto ref = refParam();
      if (world.avoid.badChildLists && (ref.entry == nullptr || !ref.entry->returned)) continue;
      chosen.push_back(kj::mv(ref));
    }
    return chosen;
  }
  void setRefList(capnp::List<proto::Ref>::Builder list,
                  std::vector<RefArgument>& chosen) {
    for (uint i = 0; i < list.size(); i++) list.set(i, kj::mv(chosen[i].cap));
  }

  template <typename T>
  void dropOne(std::vector<T>& pool) {
    if (pool.empty()) return;
    size_t i = in.below(pool.size());
    std::swap(pool[i], pool.back());
    pool.pop_back();
  }

  void keepRef(proto::Ref::Client cap, bool returned,
               std::shared_ptr<const std::string> value = nullptr) {
    refs.push_back(RefEntry{kj::mv(cap), kj::mv(value), returned});
  }

  void keepPlacement(proto::Placement::Reader placement) {
    if (placement.hasSegment()) segments.push_back(placement.getSegment());
  }

  // --- operations ----------------------------------------------------------------------
  void step() {
    switch (in.byte() % kOperations) {
      case 0: {  // Store.put
        auto request = connection().store.putRequest();
        auto bytes = std::make_shared<const std::string>(value(size() % (64 << 10)));
        request.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes->data()),
                                     bytes->size()));
        auto children = refList(3);
        setRefList(request.initChildren(children.size()), children);
        request.setTimeoutMs(timeoutMs());
        auto promise = request.send();
        if (in.flag()) keepRef(promise.getRef(), false, bytes);  // pipelined: before put returns
        track(kj::mv(promise), [this, bytes](auto& r) { keepRef(r.getRef(), true, bytes); });
        break;
      }
      case 1: {  // Store.create
        auto request = connection().store.createRequest();
        request.setSize(size());
        request.setTimeoutMs(timeoutMs());
        auto promise = request.send();
        if (in.flag()) buffers.push_back(promise.getBuffer());
        track(kj::mv(promise), [this](auto& r) {
          buffers.push_back(r.getBuffer());
          if (r.hasPlacement()) keepPlacement(r.getPlacement());
        });
        break;
      }
      case 2: {  // Store.restore
        auto request = connection().store.restoreRequest();
        request.setToken(token());
        track(request.send(), [this](auto& r) { keepRef(r.getRef(), true); });
        break;
      }
      case 3:  // Store.stats
        track(connection().store.statsRequest().send(), [](auto&) {});
        break;
      case 4: {  // Store.list, a page from a cursor (0: the first page; any other value too)
        auto request = connection().store.listRequest();
        request.setCursor(in.flag() ? 0 : in.u64());
        request.setLimit(in.flag() ? 0 : in.below(4) == 0 ? in.u32() : in.below(8));
        track(request.send(), [](auto&) {});
        break;
      }
      case 5: {  // Store.promise
        auto promise = connection().store.promiseRequest().send();
        if (in.flag()) keepRef(promise.getRef(), false);
        if (in.flag()) fulfillers.push_back(promise.getFulfiller());
        track(kj::mv(promise), [this](auto& r) {
          keepRef(r.getRef(), true);
          fulfillers.push_back(r.getFulfiller());
        });
        break;
      }
      case 6: {  // Store.lookup
        auto request = connection().store.lookupRequest();
        request.setName(name());
        track(request.send(), [this](auto& r) { keepRef(r.getRef(), true); });
        break;
      }
      case 7: {  // Store.unname
        auto request = connection().store.unnameRequest();
        request.setName(name());
        track(request.send(), [](auto&) {});
        break;
      }
      case 8: {  // Store.names, a page after a name
        auto request = connection().store.namesRequest();
        if (in.flag()) request.setAfter(name());
        request.setLimit(in.flag() ? 0 : in.below(4) == 0 ? in.u32() : in.below(8));
        track(request.send(), [](auto&) {});
        break;
      }
      case 9: {  // Store.adopt
        auto request = connection().store.adoptRequest();
        request.setRef(refParam().cap);
        track(request.send(), [this](auto& r) { keepRef(r.getRef(), true); });
        break;
      }
      case 10: {  // Store.putMany
        auto request = connection().store.putManyRequest();
        size_t count = in.below(5);
        auto values = request.initValues(count);
        std::vector<std::shared_ptr<const std::string>> kept;
        for (size_t i = 0; i < count; i++) {
          kept.push_back(std::make_shared<const std::string>(value(in.below(48))));  // 0: empty
          values.set(i, kj::arrayPtr(reinterpret_cast<const kj::byte*>(kept.back()->data()),
                                     kept.back()->size()));
        }
        request.setTimeoutMs(timeoutMs());
        track(request.send(), [this, kept](auto& r) {
          auto got = r.getRefs();
          if (got.size() != kept.size()) fail("putMany returned the wrong number of Refs");
          for (uint i = 0; i < got.size(); i++) keepRef(got[i], true, kept[i]);
        });
        break;
      }
      case 11: {  // Store.readMany
        auto request = connection().store.readManyRequest();
        auto chosen = refList(3);
        std::vector<std::shared_ptr<const std::string>> expected;
        for (auto& ref: chosen) expected.push_back(ref.entry ? ref.entry->value : nullptr);
        setRefList(request.initRefs(chosen.size()), chosen);
        track(request.send(), [expected](auto& r) {
          auto values = r.getValues();
          if (values.size() != expected.size()) fail("readMany returned the wrong count");
          for (uint i = 0; i < values.size(); i++) {
            if (expected[i] && kj::str(values[i].asChars()) != expected[i]->c_str()) {
              fail("readMany returned other bytes than were put");
            }
          }
        });
        break;
      }
      case 12: {  // Store.hello
        auto request = connection().store.helloRequest();
        request.setClientName("fuzz");
        if (in.flag()) request.setSecret(kj::StringPtr(kSecret).asBytes());
        track(request.send(), [](auto&) {});
        break;
      }
      case 13: {  // Ref.info
        if (refs.empty()) break;
        auto& entry = refs[in.below(refs.size())];
        track(entry.cap.infoRequest().send(), [value = entry.value](auto& r) {
          if (value && r.getInfo().getSize() != value->size()) fail("info reports another size");
        });
        break;
      }
      case 14: {  // Ref.read
        if (refs.empty()) break;
        auto& entry = refs[in.below(refs.size())];
        auto request = entry.cap.readRequest();
        uint64_t offset = in.flag() ? in.below(80) : in.u64();
        uint64_t length = in.flag() ? in.below(80) : in.u64();
        request.setOffset(offset);
        request.setLength(length);
        track(request.send(), [value = entry.value, offset, length](auto& r) {
          if (!value) return;
          if (offset > value->size()) fail("a read past the end succeeded");
          std::string want = value->substr(offset, length);
          auto data = r.getData();
          if (std::string(data.asChars().begin(), data.size()) != want) {
            fail("read returned other bytes than were put");
          }
        });
        break;
      }
      case 15: {  // Ref.view
        if (refs.empty()) break;
        auto promise = refs[in.below(refs.size())].cap.viewRequest().send();
        if (in.flag()) views.push_back(promise.getView());
        track(kj::mv(promise), [this](auto& r) {
          views.push_back(r.getView());
          keepPlacement(r.getPlacement());
        });
        break;
      }
      case 16: {  // Ref.share
        if (refs.empty()) break;
        auto request = refs[in.below(refs.size())].cap.shareRequest();
        static const uint32_t ttls[] = {60, 1, 0, 2592000, 2592001, 3600};
        request.setTtlSeconds(ttls[in.below(6)]);
        request.setUses(in.below(3));
        track(request.send(), [this](auto& r) { tokens.push_back(r.getToken().cStr()); });
        break;
      }
      case 17: {  // Ref.whenReady
        if (refs.empty()) break;
        track(refs[in.below(refs.size())].cap.whenReadyRequest().send(), [](auto&) {});
        break;
      }
      case 18: {  // Ref.children
        if (refs.empty()) break;
        track(refs[in.below(refs.size())].cap.childrenRequest().send(), [this](auto& r) {
          for (auto child: r.getChildren()) keepRef(child, true);
        });
        break;
      }
      case 19: {  // Ref.saveAs
        if (refs.empty()) break;
        auto request = refs[in.below(refs.size())].cap.saveAsRequest();
        request.setName(name());
        track(request.send(), [](auto&) {});
        break;
      }
      case 20: {  // WriteBuffer.write
        if (buffers.empty()) break;
        auto request = buffers[in.below(buffers.size())].writeRequest();
        request.setOffset(in.flag() ? in.below(4096) : in.u64());
        std::string bytes = value(in.flag() ? in.below(64) : in.below(8192));
        request.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()),
                                     bytes.size()));
        trackVoid(request.send());
        break;
      }
      case 21: {  // WriteBuffer.seal
        if (buffers.empty()) break;
        auto request = buffers[in.below(buffers.size())].sealRequest();
        auto children = refList(3);
        setRefList(request.initChildren(children.size()), children);
        auto promise = request.send();
        if (in.flag()) keepRef(promise.getRef(), false);
        track(kj::mv(promise), [this](auto& r) { keepRef(r.getRef(), true); });
        break;
      }
      case 22: {  // Fulfiller.fulfill
        if (fulfillers.empty()) break;
        auto request = fulfillers[in.below(fulfillers.size())].fulfillRequest();
        uint64_t length = size() % (64 << 10);
        if (world.avoid.fulfillInvalid && length == 0) length = 1;
        std::string bytes = value(length);
        request.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()),
                                     bytes.size()));
        auto children = refList(2);
        setRefList(request.initChildren(children.size()), children);
        track(request.send(), [](auto&) {});
        break;
      }
      case 23: {  // Fulfiller.fulfillWith
        if (fulfillers.empty()) break;
        auto request = fulfillers[in.below(fulfillers.size())].fulfillWithRequest();
        request.setRef(refParam().cap);
        track(request.send(), [](auto&) {});
        break;
      }
      case 24: {  // Fulfiller.reject
        if (fulfillers.empty()) break;
        auto request = fulfillers[in.below(fulfillers.size())].rejectRequest();
        request.setReason(in.flag() ? "bad input" : "");
        track(request.send(), [](auto&) {});
        break;
      }
      case 25: {  // View.placement
        if (views.empty()) break;
        track(views[in.below(views.size())].placementRequest().send(),
              [this](auto& r) { keepPlacement(r.getPlacement()); });
        break;
      }
      case 26: {  // Segment.info / Segment.reattach
        if (segments.empty()) break;
        auto& segment = segments[in.below(segments.size())];
        if (in.flag()) {
          track(segment.infoRequest().send(), [](auto&) {});
        } else {
          track(segment.reattachRequest().send(),
                [this](auto& r) { segments.push_back(r.getSegment()); });
        }
        break;
      }
      case 27:  // copy a Ref capability (same holder, one more reference)
        if (!refs.empty()) {
          RefEntry& entry = refs[in.below(refs.size())];
          RefEntry copy{proto::Ref::Client(entry.cap), entry.value, entry.returned};
          refs.push_back(kj::mv(copy));
        }
        break;
      case 28:  // drop a Ref
        dropOne(refs);
        break;
      case 29:  // drop a buffer, a Fulfiller, a View or a Segment
        switch (in.below(4)) {
          case 0: dropOne(buffers); break;
          case 1: dropOne(fulfillers); break;
          case 2: dropOne(views); break;
          case 3: dropOne(segments); break;
        }
        break;
      case 30:  // let the calls in flight run
        turn();
        break;
      case 31: {  // time passes: deadlines and token expiries
        static const kj::Duration steps[] = {1 * kj::MILLISECONDS, 100 * kj::MILLISECONDS,
                                             1 * kj::SECONDS, 31 * kj::SECONDS,
                                             31ll * 24 * 3600 * kj::SECONDS};
        timer.advanceTo(timer.now() + steps[in.below(5)]);
        turn();
        break;
      }
      case 32:  // forget a token
        dropOne(tokens);
        break;
      case 33: {  // Ref.release: this holder goes at once; later calls on it (and its copies)
                  // fail with FAILED_PRECONDITION
        if (refs.empty()) break;
        track(refs[in.below(refs.size())].cap.releaseRequest().send(), [](auto&) {});
        break;
      }
      case 34: {  // View.release: the pin goes at once
        if (views.empty()) break;
        track(views[in.below(views.size())].releaseRequest().send(), [](auto&) {});
        break;
      }
      case 35: {  // Store.hello(noFileDescriptors): copy-path placements from now on
        auto request = connection().store.helloRequest();
        request.setNoFileDescriptors(true);
        if (in.flag()) request.setSecret(kj::StringPtr(kSecret).asBytes());
        track(request.send(), [](auto& r) {
          if (r.getSharedMemory() || r.getWritableSharedMemory()) {
            fail("hello(noFileDescriptors) left the connection its shared memory");
          }
        });
        break;
      }
      case 36: {  // Store.peer: this daemon has no peers (no --tcp), so it must refuse cleanly
        auto request = connection().store.peerRequest();
        static const uint64_t origins[] = {0, kOrigin, 0xbeef};
        request.setOrigin(origins[in.below(3)]);
        request.setAddress(in.flag() ? "10.1.2.3:7000" : "no port");
        track(request.send(), [](auto&) { fail("Store.peer succeeded on a daemon without peers"); });
        break;
      }
      case 37:  // Store.peers: none
        track(connection().store.peersRequest().send(), [](auto& r) {
          if (r.getPeers().size() != 0) fail("Store.peers lists peers of a daemon without any");
        });
        break;
    }
  }

  void turn() {
    world.waitScope.poll();
    checkTable();
  }

  // The object table agrees with itself: its counters with its records, each record with the
  // rules of liveness, and the arena holds at least the bytes of every object that owns some.
  void checkTable() {
    const gc::ObjectTable& table = store.table();
    auto stats = table.stats();
    uint64_t objects = 0, dead = 0, holders = 0, leases = 0, names = 0, parents = 0,
             liveBytes = 0, ownedBytes = 0, links = 0;
    uint64_t perState[gc::kNumObjectStates] = {};
    table.forEach([&](const gc::ObjectRecord& r) {
      objects++;
      perState[size_t(r.state)]++;
      holders += r.holders;
      leases += r.leases;
      names += r.names;
      parents += r.parents;
      if (r.dead) {
        dead++;
        if (r.pins == 0 || gc::ObjectTable::refCount(r) != 0) fail("a dead object is kept");
      } else {
        liveBytes += r.size;
        if (gc::ObjectTable::refCount(r) == 0) fail("a live object has no references");
        links += table.childrenOf(r.id).size() + (table.aliasTarget(r.id) ? 1 : 0);
        if (table.holdersOf(r.id).size() != r.holders) fail("holder chain != holder count");
      }
      if (gc::ObjectTable::ownsBytes(r) && r.state != gc::ObjectState::SPILLED) {
        ownedBytes += r.size;
      }
      if (table.find(table.resolveAlias(r.id)) == nullptr) fail("an alias leads nowhere");
    });
    if (objects != stats.objects || objects != table.size() || dead != stats.deadPinned ||
        holders != stats.holders || leases != stats.leases || names != stats.names ||
        parents != stats.parentRefs || links != parents || liveBytes != stats.liveBytes) {
      fail(kj::str("the table's counters disagree with its records: objects ", objects, "/",
                   stats.objects, " dead ", dead, "/", stats.deadPinned, " holders ", holders,
                   "/", stats.holders, " leases ", leases, "/", stats.leases, " names ", names,
                   "/", stats.names, " parents ", parents, "/", stats.parentRefs, " links ",
                   links, " liveBytes ", liveBytes, "/", stats.liveBytes));
    }
    for (size_t s = 0; s < gc::kNumObjectStates; s++) {
      if (perState[s] != stats.perState[s]) fail("per-state counts disagree");
    }
    if (table.listNames().size() != stats.names) fail("name list != name count");
    for (auto& entry: table.listNames()) {
      auto named = table.find(entry.second);
      if (named == nullptr || named->dead) fail("a name pins a dead object");
    }
    if (arena.bytesAllocated() < ownedBytes) fail("objects own more bytes than allocated");
  }

  // Drops everything, lets every call complete, and checks that nothing is left.
  void finish() {
    draining = true;
    fulfillers.clear();  // unsettled promises break, waking their readers
    turn();
    refs.clear();
    buffers.clear();
    views.clear();
    segments.clear();
    tokens.clear();
    // Requests waiting for memory time out (at most 30 s), then everything settles.
    for (int i = 0; i < 10 && inFlight > 0; i++) {
      timer.advanceTo(timer.now() + 31 * kj::SECONDS);
      turn();
    }
    if (inFlight > 0) {
      fail(kj::str(inFlight, " call(s) never completed, with every capability dropped"));
    }
    // Names pin their objects until unnamed; tokens until they expire (30 days at most).
    for (auto& entry: store.table().listNames()) {
      auto request = connections[0].store.unnameRequest();
      request.setName(entry.first.c_str());
      request.send().wait(world.waitScope);
    }
    timer.advanceTo(timer.now() + 31ll * 24 * 3600 * kj::SECONDS);
    turn();
    auto stats = store.table().stats();
    if (stats.objects != 0 || stats.holders != 0 || stats.leases != 0 || stats.names != 0) {
      fail(kj::str("objects left after everything was dropped: ", stats.objects, " objects, ",
                   stats.holders, " holders, ", stats.leases, " tokens, ", stats.names,
                   " names"));
    }
    if (arena.bytesAllocated() != 0) {
      fail(kj::str(arena.bytesAllocated(), " bytes still allocated at the end"));
    }
    for (auto& connection: connections) connection.store = nullptr;
    turn();
    for (auto& connection: connections) services.closeConnection(connection.id);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput input(data, size);
  Session(world(), input).run();
  return 0;
}
