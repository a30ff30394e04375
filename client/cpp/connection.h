// Internals of the C++ client: one Cap'n Proto connection to refstored, its event loop, and
// the cache of mapped shared-memory segments. Not part of the public API.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif
#include <sched.h>
#include <sys/types.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>
#include <kj/time.h>

#include "client/cpp/refstore_client.h"
#include "schema/batching_message_stream.h"
#include "schema/refstore.capnp.h"

namespace refstore::detail {

// One mmap of a segment, kept for the life of the connection (map once, read many).
//
// Segments are mapped without MAP_POPULATE: a process's page-table entries for shared memory
// cost it at exit (the kernel tears them down before it closes the process's sockets, so a
// SIGKILLed client holding a fully wired 256 MiB segment delays the daemon's reclaim by
// ~15 ms) and a reader should pay only for the pages it reads (read faults map 64 KiB at a
// time). A writer, though, is about to touch every page of its value, and write faults come
// one 4 KiB page at a time: populateForWrite wires the value's range in one madvise call the
// first time, remembering which 64 KiB blocks are already wired (the daemon never punches
// holes in a live segment, so they stay wired).
struct Mapping {
  uint8_t* base = nullptr;
  size_t size = 0;
  std::vector<uint64_t> populatedBlocks;  // bitmap, one bit per kPopulateBlock bytes
  // A shared segment's capability, held as long as the mapping: refstored attaches the fd only
  // the first time it sends the capability on a connection and reuses the export while we hold
  // it, so later placements in this segment need neither an fd nor a Release.
  proto::Segment::Client segment = nullptr;
  static constexpr size_t kPopulateBlock = 64 * 1024;

  // Wires [offset, offset + length) into this process's page tables for writing, skipping
  // blocks wired before. Best effort: where MADV_POPULATE_WRITE is unavailable (Linux < 5.14)
  // pages are faulted in by the writes themselves, one page fault per 4 KiB.
  void populateForWrite(size_t offset, size_t length);
  ~Mapping();
};

// Whatever a handle owns on its connection's event loop: what dispose() destroys, queues for
// the owning thread, or leaks.
struct Disposable {
  virtual ~Disposable() noexcept(false) = default;  // KJ objects may throw from destructors
};

// Where the calling code runs relative to a ThreadLoop.
enum class Affinity {
  OWNER,         // its own thread: anything goes
  OTHER_THREAD,  // KJ objects belong to one thread: refuse calls, queue destruction
  FORKED_CHILD,  // a copy of the loop inherited across fork(): its socket is the parent's
};

// How many fork()s lie between this process and the one the library was loaded in
// (pthread_atfork counts them in each child, so checking costs no system call).
uint64_t forkGeneration();

// KJ allows one event loop per thread, so every Connection made on a thread shares that
// thread's loop; it lives while any of them does.
struct ThreadLoop {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  // The loop's owner: its KJ objects may be touched by this thread of this process only.
  const std::thread::id owner = std::this_thread::get_id();
  const pid_t pid;
  const uint64_t generation = forkGeneration();

  ThreadLoop();
  // This thread's loop, made on first use. A loop this thread inherited across fork() is
  // abandoned (leaked, never run: it shares its epoll instance and sockets with the parent) and
  // replaced, so a forked child can connect clients of its own.
  static std::shared_ptr<ThreadLoop> forThisThread();

  Affinity affinity() const {
    if (generation != forkGeneration()) return Affinity::FORKED_CHILD;
    if (std::this_thread::get_id() != owner) return Affinity::OTHER_THREAD;
    return Affinity::OWNER;
  }

  // Handles destroyed on another thread wait here until the owner's next call destroys them
  // (see dispose()); if the owner never calls again they live until the process exits.
  void adoptOrphan(std::unique_ptr<Disposable> orphan);
  void destroyOrphans();  // on the owner thread
  std::mutex orphansMutex;
  std::vector<std::unique_ptr<Disposable>> orphans;
  std::atomic<bool> hasOrphans{false};

  // How many of the blocking API's waits (and flushes) are running this loop right now. While
  // one is, a handle dropped inside one of its callbacks must not poll the loop itself: KJ 0.9
  // lets poll() run there, as a nested run of the loop that re-enters other callbacks, and on
  // every seal (whose continuation drops the WriteBuffer handle) it cost an epoll_wait and a
  // write before seal() could return. The wait flushes once it is over instead.
  int waitsRunning = 0;
  // A handle was dropped inside a wait's callbacks: its Release is queued but not yet sent.
  bool flushDeferred = false;
};

struct Connection {
  Connection(const ConnectOptions& options);
  ~Connection();

  // Throws MISUSE unless called on the loop's own thread of the process that connected (a
  // forked child shares the parent's socket: anything it sent would corrupt the parent's
  // session). Destroys handles other threads dropped meanwhile. Every operation starts here.
  void checkUsable();

  // Runs `promise` to completion on this thread's event loop, translating failures to Error.
  // An Error thrown inside a promise callback reaches it as a kj::Exception whose description
  // is the Error's message: word such messages "refstore.<CODE>: ..." to keep their code.
  // With a non-negative timeout, gives up with ErrorCode::TIMEOUT (cancelling the wait only).
  template <typename T>
  T wait(kj::Promise<T>&& promise, double timeoutSeconds = -1) {
    loop->waitsRunning++;
    KJ_DEFER({
      loop->waitsRunning--;
      if (loop->waitsRunning == 0 && loop->flushDeferred) flush();
    });
    try {
      if (timeoutSeconds >= 0) {
        promise = promise.exclusiveJoin(
            io.provider->getTimer()
                .afterDelay(static_cast<int64_t>(timeoutSeconds * 1e9) * kj::NANOSECONDS)
                .then([]() -> T {
                  kj::throwFatalException(KJ_EXCEPTION(OVERLOADED, "refstore client timeout"));
                }));
      }
      spinUntilReady(promise);
      return promise.wait(io.waitScope);
    } catch (kj::Exception& e) {
      throwError(e);
    }
  }
  [[noreturn]] static void throwError(const kj::Exception& e);

  // Busy-polls the event loop for up to busyPollNs, returning early once `promise` is ready.
  template <typename T>
  void spinUntilReady(kj::Promise<T>& promise) {
    if (busyPollNs == 0) return;
    auto& clock = kj::systemPreciseMonotonicClock();
    kj::TimePoint deadline = clock.now() + busyPollNs * kj::NANOSECONDS;
    while (!promise.poll(io.waitScope)) {
      if (clock.now() >= deadline) return;
      sched_yield();  // a runnable daemon sharing this CPU goes first
    }
  }

  // Sends queued messages (e.g. capability releases) without blocking.
  void flush();

  // Maps the segment named by `placement` (once: mappings are cached, see `mappings`) and
  // returns the mapping and a pointer to the placement's bytes inside it.
  struct Resolved {
    std::shared_ptr<Mapping> mapping;
    uint8_t* data;
  };
  // `placement` must stay valid until the promise resolves (attach its response).
  kj::Promise<Resolved> resolve(proto::Placement::Reader placement, bool writable);

  // A Segment capability and the fd it carries (owned by the capability).
  struct SegmentFd {
    proto::Segment::Client capability;
    int fd;
  };
  // `segment` with its fd; if it arrived without one, a reattached capability that has one.
  kj::Promise<SegmentFd> segmentWithFd(proto::Segment::Client segment, bool reattached = false);

  std::shared_ptr<ThreadLoop> loop;  // first member: destroyed last
  kj::AsyncIoContext& io;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<BatchingMessageStream> messages;  // small messages go out one write per loop turn
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::Store::Client store = nullptr;
  bool sharedMemory = false;
  bool writableSharedMemory = false;
  uint64_t busyPollNs = 0;
  // Segments mapped once and kept: shared ones for the connection's life, dedicated ones (in
  // dedicatedOrder, oldest first) only the most recent kCachedDedicatedMappings.
  using MappingKey = std::tuple<uint64_t, uint32_t, bool>;  // origin, segment id, writable
  std::map<MappingKey, std::shared_ptr<Mapping>> mappings;
  std::deque<MappingKey> dedicatedOrder;
  static constexpr size_t kCachedDedicatedMappings = 2;
};

// A Client's share of its connection (the connection itself is shared by every handle).
struct ConnectionHold: Disposable {
  std::shared_ptr<Connection> connection;
  explicit ConnectionHold(std::shared_ptr<Connection> c): connection(std::move(c)) {}
};

struct RefState: Disposable {
  std::shared_ptr<Connection> connection;
  proto::Ref::Client ref = nullptr;
  ~RefState();
};

struct ViewState: Disposable {
  std::shared_ptr<Connection> connection;
  proto::View::Client view = nullptr;
  std::shared_ptr<Mapping> mapping;
  const uint8_t* data;
  size_t size;
  ~ViewState();
};

struct BufferState: Disposable {
  std::shared_ptr<Connection> connection;
  proto::WriteBuffer::Client buffer = nullptr;
  std::shared_ptr<Mapping> mapping;
  uint8_t* data;  // null without writable shared memory
  uint64_t size;
  // Dropping an unsealed buffer aborts the object and frees its space: say so at once. After
  // a seal the Release frees nothing (the hold passed to the Ref), so it waits for the
  // connection's next message instead of costing a write before seal() returns.
  bool releaseAtOnce = true;
  ~BufferState();
};

struct FulfillerState: Disposable {
  std::shared_ptr<Connection> connection;
  proto::Fulfiller::Client fulfiller = nullptr;
  ~FulfillerState();
};

// Destroys a handle's state where that is safe. On the owning thread: now. On another thread
// (Python's garbage collector runs finalizers on whichever thread drops the last reference):
// queued for the owner's next call, since Cap'n Proto objects belong to one thread. In a child
// forked after the state was made: never. Its connection is the parent's socket, and releasing
// anything through it (or tearing the connection down, which shuts the socket down) would
// release the parent's references or end its session; the child's copy is leaked instead, and
// the parent keeps everything.
// Tells LeakSanitizer that `object`, and everything it reaches, is leaked on purpose (the
// forked-child case below), so that a child under ASan does not fail its exit over it.
inline void leakOnPurpose(const void* object) {
#if defined(__SANITIZE_ADDRESS__)
  __lsan_ignore_object(object);
#else
  (void)object;
#endif
}

template <typename State>
void dispose(std::unique_ptr<State> state) {
  if (!state) return;
  ThreadLoop& loop = *state->connection->loop;
  switch (loop.affinity()) {
    case Affinity::OWNER: state.reset(); return;
    case Affinity::OTHER_THREAD: loop.adoptOrphan(std::move(state)); return;
    case Affinity::FORKED_CHILD: leakOnPurpose(state.release()); return;  // (see above)
  }
}

// A Client's share of a connection, disposed of the same way.
inline void dispose(std::shared_ptr<Connection> connection) {
  if (connection) dispose(std::make_unique<ConnectionHold>(std::move(connection)));
}

// Builds the public handle types from their states and reaches into them (their constructors
// and states are private to the public API).
struct Factory {
  static Ref ref(std::shared_ptr<Connection> connection, proto::Ref::Client ref);
  static Fulfiller fulfiller(std::shared_ptr<Connection> connection,
                             proto::Fulfiller::Client fulfiller);
  static View view(std::unique_ptr<ViewState> state) { return View(std::move(state)); }
  static WriteBuffer buffer(std::unique_ptr<BufferState> state) {
    return WriteBuffer(std::move(state));
  }
  // The checked accessors every operation goes through (see Connection::checkUsable).
  static const std::shared_ptr<Connection>& usable(const Client& client) {
    client.connection->checkUsable();
    return client.connection;
  }
  static RefState& state(const Ref& ref) {
    if (!ref.state) throw Error(ErrorCode::FAILED_PRECONDITION, "use of a moved-from Ref");
    ref.state->connection->checkUsable();
    return *ref.state;
  }
  static BufferState& state(WriteBuffer& buffer) {
    if (!buffer.state) throw Error(ErrorCode::FAILED_PRECONDITION, "buffer already sealed");
    buffer.state->connection->checkUsable();
    return *buffer.state;
  }
  static FulfillerState& state(const Fulfiller& fulfiller) {
    if (!fulfiller.state) {
      throw Error(ErrorCode::FAILED_PRECONDITION, "use of a moved-from Fulfiller");
    }
    fulfiller.state->connection->checkUsable();
    return *fulfiller.state;
  }
  // The buffer was sealed: drop its handle (see BufferState::releaseAtOnce).
  static void clear(WriteBuffer& buffer) {
    buffer.state->releaseAtOnce = false;
    buffer.state.reset();
  }
};

}  // namespace refstore::detail
