#include "tests/fault_proxy.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include <kj/async-io.h>
#include <kj/debug.h>

#include "tests/tcp_testing.h"

namespace refstore::testing {

namespace {

constexpr size_t CHUNK_BYTES = 128 << 10;
constexpr int TO_TARGET = 0;
constexpr int TO_CLIENT = 1;

std::vector<int> directionsOf(Direction direction) {
  switch (direction) {
    case Direction::TO_TARGET: return {TO_TARGET};
    case Direction::TO_CLIENT: return {TO_CLIENT};
    case Direction::BOTH: return {TO_TARGET, TO_CLIENT};
  }
  return {};
}

int oneDirection(Direction direction) {
  if (direction == Direction::BOTH) {
    throw std::invalid_argument("this fault applies to one direction: TO_TARGET or TO_CLIENT");
  }
  return direction == Direction::TO_TARGET ? TO_TARGET : TO_CLIENT;
}

kj::Own<kj::NetworkAddress> socketAddress(kj::Network& network, const std::string& hostPort) {
  struct sockaddr_in address = ipv4SocketAddress(hostPort);
  // getSockaddr, not parseAddress: no name lookup (and no lookup thread) for a literal address.
  return network.getSockaddr(&address, sizeof(address));
}

// Socket options are best effort (a socket the peer already reset may refuse them): plain
// setsockopt on the descriptor, errors ignored, rather than the stream's throwing wrapper.
void setOption(kj::AsyncIoStream& stream, int level, int option, const void* value,
               socklen_t length) {
  KJ_IF_MAYBE(fd, stream.getFd()) { setsockopt(*fd, level, option, value, length); }
}

void setNoDelay(kj::AsyncIoStream& stream) {
  int one = 1;
  setOption(stream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Closing a socket with a zero linger time sends RST: the peer sees the connection reset, as
// when a host or middlebox drops it, rather than an orderly end of stream.
void resetOnClose(kj::AsyncIoStream& stream) {
  struct linger abortive = {1, 0};
  setOption(stream, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
}

// A one-shot wake-up: wait() returns a promise that wake() resolves.
class Signal {
 public:
  kj::Promise<void> wait() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiter = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }
  void wake() {
    KJ_IF_MAYBE(w, waiter) {
      (*w)->fulfill();
      waiter = nullptr;
    }
  }

 private:
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> waiter;
};

struct CorruptionState {
  Corruption rule;
  uint64_t flipped = 0;
};

struct BreakRule {
  int direction;
  uint64_t bytes;
  Break action;
  int64_t connection;
};

class Loop;

class Connection;

// One direction of one connection: a reader that queues chunks (stamped with when they may
// go), and a writer that forwards them when due, unstalled and within the rate.
class Pipe {
 public:
  Pipe(Loop& loop, Connection& connection, int direction, kj::AsyncIoStream& in,
       kj::AsyncIoStream& out)
      : loop(loop), connection(connection), direction(direction), in(in), out(out) {}
  kj::Promise<void> readLoop();
  kj::Promise<void> writeLoop();

 private:
  struct Chunk {
    kj::Array<kj::byte> buffer;
    size_t size;
    size_t written;
    kj::TimePoint due;
  };
  void corrupt(kj::byte* data, size_t size);
  kj::Array<kj::byte> takeBuffer();
  // Waits until `time` or until a control changes, whichever is first, then writes on.
  kj::Promise<void> waitThenWrite(kj::TimePoint time);

  Loop& loop;
  Connection& connection;
  int direction;
  kj::AsyncIoStream& in;
  kj::AsyncIoStream& out;
  std::deque<Chunk> queue;
  std::vector<kj::Array<kj::byte>> spareBuffers;
  uint64_t queuedBytes = 0;
  uint64_t readBytes = 0;
  uint64_t writtenBytes = 0;
  bool endOfInput = false;
  kj::TimePoint endDue = kj::origin<kj::TimePoint>();  // when the end of the stream may go on
  kj::TimePoint nextSend = kj::origin<kj::TimePoint>();
  Signal dataQueued;
  Signal spaceFreed;
};

class Connection final: private kj::TaskSet::ErrorHandler {
 public:
  Connection(Loop& loop, uint64_t number, kj::Own<kj::AsyncIoStream> client,
             kj::Own<kj::AsyncIoStream> server);
  void reset();  // RST both ends (when this connection goes)
  void finished(bool withReset);

  Loop& loop;
  const uint64_t number;
  bool stalledByBreak = false;
  bool breakFired = false;

 private:
  void taskFailed(kj::Exception&&) override { finished(true); }
  kj::Own<kj::AsyncIoStream> client;
  kj::Own<kj::AsyncIoStream> server;
  Pipe toTarget;
  Pipe toClient;
  int pipesDone = 0;
  bool done = false;
  kj::TaskSet tasks;
};

// Everything that lives on the proxy's thread. Touched only from there (controls arrive through
// the thread's kj::Executor).
class Loop final: private kj::TaskSet::ErrorHandler {
 public:
  Loop(kj::AsyncIoContext& io, const FaultProxyOptions& options)
      : timer(io.provider->getTimer()),
        maxInFlight(std::max<uint64_t>(options.maxInFlight, CHUNK_BYTES)),
        target(socketAddress(io.provider->getNetwork(), options.target)),
        listener(socketAddress(io.provider->getNetwork(), options.listen)->listen()),
        tasks(*this) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    changed = paf.promise.fork();
    changedFulfiller = kj::mv(paf.fulfiller);
    tasks.add(acceptLoop());
  }

  int port() { return listener->getPort(); }

  // A promise that resolves at the next control change: waits re-check their condition then.
  kj::Promise<void> whenChanged() { return changed.addBranch(); }
  void notifyChanged() {
    auto previous = kj::mv(changedFulfiller);
    auto paf = kj::newPromiseAndFulfiller<void>();
    changed = paf.promise.fork();
    changedFulfiller = kj::mv(paf.fulfiller);
    previous->fulfill();
  }

  // Removes a connection once the current callback has returned (it may be the connection's own).
  void remove(uint64_t number) {
    tasks.add(kj::evalLater([this, number]() { connections.erase(number); }));
  }

  template <typename Function>
  void forEachConnection(Function&& function) {
    for (auto& entry: connections) function(*entry.second);
  }

  void cutAll() {
    for (auto& entry: connections) {
      entry.second->reset();
      counters.cuts++;
    }
    connections.clear();
  }

  kj::Timer& timer;
  const uint64_t maxInFlight;
  uint64_t delayMillis[2] = {0, 0};
  uint64_t rate[2] = {0, 0};
  bool stalled[2] = {false, false};
  bool refusing = false;
  kj::Maybe<CorruptionState> corruption[2];
  kj::Maybe<BreakRule> breakRule;
  FaultProxy::Counters counters;

 private:
  void taskFailed(kj::Exception&& exception) override {
    KJ_LOG(ERROR, "fault proxy: accepting failed", exception);
  }

  kj::Promise<void> acceptLoop() {
    return listener->accept().then([this](kj::Own<kj::AsyncIoStream> client) {
      uint64_t number = counters.connections++;
      if (refusing) {
        resetOnClose(*client);
        counters.cuts++;
      } else {
        tasks.add(connectTarget(number, kj::mv(client)));
      }
      return acceptLoop();
    });
  }

  kj::Promise<void> connectTarget(uint64_t number, kj::Own<kj::AsyncIoStream> client) {
    using MaybeStream = kj::Maybe<kj::Own<kj::AsyncIoStream>>;
    return target->connect()
        .then([](kj::Own<kj::AsyncIoStream> server) -> MaybeStream { return kj::mv(server); },
              [](kj::Exception&&) -> MaybeStream { return nullptr; })
        .then([this, number, client = kj::mv(client)](MaybeStream server) mutable {
          KJ_IF_MAYBE(s, server) {
            connections.emplace(number,
                                kj::heap<Connection>(*this, number, kj::mv(client), kj::mv(*s)));
          } else {
            // The target refused (or is unreachable): so is the client, as if it had dialed it.
            resetOnClose(*client);
          }
        });
  }

  kj::Own<kj::NetworkAddress> target;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::ForkedPromise<void> changed = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> changedFulfiller;
  std::map<uint64_t, kj::Own<Connection>> connections;
  kj::TaskSet tasks;  // last: destroyed first, before what its tasks refer to
};

Connection::Connection(Loop& loop, uint64_t number, kj::Own<kj::AsyncIoStream> clientIn,
                       kj::Own<kj::AsyncIoStream> serverIn)
    : loop(loop),
      number(number),
      client(kj::mv(clientIn)),
      server(kj::mv(serverIn)),
      toTarget(loop, *this, TO_TARGET, *client, *server),
      toClient(loop, *this, TO_CLIENT, *server, *client),
      tasks(*this) {
  setNoDelay(*client);
  setNoDelay(*server);
  loop.counters.open++;
  for (Pipe* pipe: {&toTarget, &toClient}) {
    tasks.add(pipe->readLoop());
    tasks.add(pipe->writeLoop().then([this]() {
      if (++pipesDone == 2) finished(false);
    }));
  }
}

void Connection::reset() {
  if (!done) {
    done = true;
    loop.counters.open--;
  }
  resetOnClose(*client);
  resetOnClose(*server);
}

void Connection::finished(bool withReset) {
  if (done) return;
  if (withReset) {
    reset();
  } else {
    done = true;
    loop.counters.open--;
  }
  loop.remove(number);
}

kj::Array<kj::byte> Pipe::takeBuffer() {
  if (spareBuffers.empty()) return kj::heapArray<kj::byte>(CHUNK_BYTES);
  auto buffer = kj::mv(spareBuffers.back());
  spareBuffers.pop_back();
  return buffer;
}

kj::Promise<void> Pipe::readLoop() {
  if (queuedBytes >= loop.maxInFlight) {
    return spaceFreed.wait().then([this]() { return readLoop(); });
  }
  auto buffer = takeBuffer();
  kj::byte* data = buffer.begin();
  size_t capacity = buffer.size();
  return in.tryRead(data, 1, capacity)
      .then([this, buffer = kj::mv(buffer)](size_t size) mutable -> kj::Promise<void> {
        if (size == 0) {
          endOfInput = true;
          endDue = loop.timer.now() + loop.delayMillis[direction] * kj::MILLISECONDS;
          dataQueued.wake();
          return kj::READY_NOW;
        }
        corrupt(buffer.begin(), size);
        readBytes += size;
        queuedBytes += size;
        auto due = loop.timer.now() + loop.delayMillis[direction] * kj::MILLISECONDS;
        queue.push_back(Chunk{kj::mv(buffer), size, 0, due});
        dataQueued.wake();
        return readLoop();
      });
}

void Pipe::corrupt(kj::byte* data, size_t size) {
  KJ_IF_MAYBE(state, loop.corruption[direction]) {
    const Corruption& rule = state->rule;
    if (rule.connection >= 0 && uint64_t(rule.connection) != connection.number) return;
    uint64_t start = readBytes, end = readBytes + size;
    if (end <= rule.offset) return;
    uint64_t position = rule.offset;
    if (start > rule.offset) {
      if (rule.every == 0) return;
      position = rule.offset + (start - rule.offset + rule.every - 1) / rule.every * rule.every;
    }
    for (; position < end; position += rule.every) {
      if (rule.limit > 0 && state->flipped >= rule.limit) return;
      data[position - start] ^= rule.xorMask;
      state->flipped++;
      loop.counters.corruptedBytes++;
      if (rule.every == 0) return;
    }
  }
}

kj::Promise<void> Pipe::waitThenWrite(kj::TimePoint time) {
  return loop.timer.atTime(time).exclusiveJoin(loop.whenChanged()).then([this]() {
    return writeLoop();
  });
}

kj::Promise<void> Pipe::writeLoop() {
  // A stall holds the end of the stream too, and a delay delays it like the bytes before it.
  if (loop.stalled[direction] || connection.stalledByBreak) {
    return loop.whenChanged().then([this]() { return writeLoop(); });
  }
  kj::TimePoint now = loop.timer.now();
  if (queue.empty()) {
    if (!endOfInput) return dataQueued.wait().then([this]() { return writeLoop(); });
    if (endDue > now) return waitThenWrite(endDue);
    out.shutdownWrite();
    return kj::READY_NOW;
  }
  Chunk& chunk = queue.front();
  if (chunk.due > now) return waitThenWrite(chunk.due);
  size_t size = chunk.size - chunk.written;
  KJ_IF_MAYBE(rule, loop.breakRule) {
    if (rule->direction == direction && !connection.breakFired &&
        (rule->connection < 0 || uint64_t(rule->connection) == connection.number)) {
      if (writtenBytes >= rule->bytes) {
        connection.breakFired = true;
        if (rule->action == Break::CUT) {
          loop.counters.cuts++;
          connection.finished(true);
          return kj::NEVER_DONE;
        }
        connection.stalledByBreak = true;
        return writeLoop();
      }
      size = std::min<uint64_t>(size, rule->bytes - writtenBytes);
    }
  }
  if (uint64_t rate = loop.rate[direction]; rate > 0) {
    if (nextSend > now) return waitThenWrite(nextSend);
    // Slices of ~10 ms at the rate, so that the cap is smooth rather than bursts of a chunk.
    size = std::min<uint64_t>(size, std::max<uint64_t>(1024, rate / 100));
    nextSend = now + (size * 1000000000ull / rate) * kj::NANOSECONDS;
  }
  return out.write(chunk.buffer.begin() + chunk.written, size).then([this, size]() {
    Chunk& chunk = queue.front();
    chunk.written += size;
    writtenBytes += size;
    (direction == TO_TARGET ? loop.counters.bytesToTarget : loop.counters.bytesToClient) += size;
    if (chunk.written == chunk.size) {
      queuedBytes -= chunk.size;
      spareBuffers.push_back(kj::mv(chunk.buffer));
      queue.pop_front();
      spaceFreed.wake();
    }
    return writeLoop();
  });
}

}  // namespace

class FaultProxy::Impl {
 public:
  explicit Impl(const FaultProxyOptions& options) {
    std::promise<int> started;
    auto port = started.get_future();
    thread = std::thread([this, options, started = std::move(started)]() mutable {
      run(options, started);
    });
    try {
      listenPort = port.get();
    } catch (...) {
      thread.join();
      throw;
    }
  }

  ~Impl() {
    executor->executeSync([this]() { exitFulfiller->fulfill(); });
    thread.join();
  }

  // Runs `function(loop)` on the proxy's thread; waits that had been blocked then look again.
  template <typename Function>
  void control(Function&& function) {
    executor->executeSync([&]() {
      function(*loop);
      loop->notifyChanged();
    });
  }

  FaultProxy::Counters counters() {
    return executor->executeSync([&]() { return loop->counters; });
  }

  int listenPort = 0;

 private:
  void run(const FaultProxyOptions& options, std::promise<int>& started) {
    bool running = false;
    kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() {
      if (!options.networkNamespace.empty()) joinNetworkNamespace(options.networkNamespace);
      auto io = kj::setupAsyncIo();
      Loop state(io, options);
      loop = &state;
      auto paf = kj::newPromiseAndFulfiller<void>();
      exitFulfiller = kj::mv(paf.fulfiller);
      executor = kj::getCurrentThreadExecutor().addRef();
      running = true;
      started.set_value(state.port());
      paf.promise.wait(io.waitScope);
      loop = nullptr;
    });
    KJ_IF_MAYBE(e, failure) {
      if (running) {
        KJ_LOG(FATAL, "fault proxy thread failed", *e);
        abort();
      }
      started.set_exception(std::make_exception_ptr(std::runtime_error(
          "fault proxy on " + options.listen + " to " + options.target + ": " +
          e->getDescription().cStr())));
    }
  }

  static void joinNetworkNamespace(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    KJ_REQUIRE(fd >= 0, "cannot open the network namespace", path, strerror(errno));
    int result = setns(fd, CLONE_NEWNET);
    int error = errno;
    close(fd);
    KJ_REQUIRE(result == 0, "cannot join the network namespace", path, strerror(error));
  }

  std::thread thread;
  Loop* loop = nullptr;
  kj::Own<const kj::Executor> executor;
  kj::Own<kj::PromiseFulfiller<void>> exitFulfiller;
};

FaultProxy::FaultProxy(const FaultProxyOptions& options)
    : impl(std::make_unique<Impl>(options)) {
  listenAddress = options.listen.substr(0, options.listen.rfind(':')) + ":" +
                  std::to_string(impl->listenPort);
}

FaultProxy::FaultProxy(const std::string& listen, const std::string& target)
    : FaultProxy(FaultProxyOptions{listen, target}) {}

FaultProxy::~FaultProxy() = default;

void FaultProxy::setDelay(Direction direction, uint64_t millis) {
  impl->control([&](Loop& loop) {
    for (int d: directionsOf(direction)) loop.delayMillis[d] = millis;
  });
}

void FaultProxy::setRate(Direction direction, uint64_t bytesPerSecond) {
  impl->control([&](Loop& loop) {
    for (int d: directionsOf(direction)) loop.rate[d] = bytesPerSecond;
  });
}

void FaultProxy::stall(Direction direction) {
  impl->control([&](Loop& loop) {
    for (int d: directionsOf(direction)) loop.stalled[d] = true;
  });
}

void FaultProxy::resume() {
  impl->control([&](Loop& loop) {
    loop.stalled[TO_TARGET] = loop.stalled[TO_CLIENT] = false;
    loop.forEachConnection([](Connection& connection) { connection.stalledByBreak = false; });
  });
}

void FaultProxy::cut() {
  impl->control([&](Loop& loop) {
    loop.cutAll();
  });
}

void FaultProxy::refuse(bool refusing) {
  impl->control([&](Loop& loop) {
    loop.refusing = refusing;
  });
}

void FaultProxy::corrupt(const Corruption& corruption) {
  int d = oneDirection(corruption.direction);
  impl->control([&](Loop& loop) {
    loop.corruption[d] = CorruptionState{corruption, 0};
  });
}

void FaultProxy::clearCorruption() {
  impl->control([&](Loop& loop) {
    loop.corruption[TO_TARGET] = nullptr;
    loop.corruption[TO_CLIENT] = nullptr;
  });
}

void FaultProxy::breakAfter(Direction direction, uint64_t bytes, Break action,
                            int64_t connection) {
  int d = oneDirection(direction);
  impl->control([&](Loop& loop) {
    loop.breakRule = BreakRule{d, bytes, action, connection};
  });
}

void FaultProxy::clearBreak() {
  impl->control([&](Loop& loop) {
    loop.breakRule = nullptr;
  });
}

void FaultProxy::reset() {
  impl->control([&](Loop& loop) {
    for (int d: {TO_TARGET, TO_CLIENT}) {
      loop.delayMillis[d] = 0;
      loop.rate[d] = 0;
      loop.stalled[d] = false;
      loop.corruption[d] = nullptr;
    }
    loop.refusing = false;
    loop.breakRule = nullptr;
    loop.forEachConnection([](Connection& connection) { connection.stalledByBreak = false; });
  });
}

FaultProxy::Counters FaultProxy::counters() const {
  return impl->counters();
}

}  // namespace refstore::testing
