#include "client/cpp/connection.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include <kj/debug.h>
#include <kj/io.h>

#include "schema/socket_path.h"

namespace refstore::detail {
namespace {

struct CodeWord {
  const char* word;
  ErrorCode code;
};
const CodeWord kCodeWords[] = {
#define REFSTORE_ERROR_CODE_WORD(number, NAME, summary) {#NAME, ErrorCode::NAME},
    REFSTORE_ERROR_CODES(REFSTORE_ERROR_CODE_WORD)
#undef REFSTORE_ERROR_CODE_WORD
};

std::string programName() {
  char name[64] = {0};
  FILE* comm = fopen("/proc/self/comm", "r");
  if (comm == nullptr) return "";
  if (fgets(name, sizeof(name), comm) == nullptr) name[0] = 0;
  fclose(comm);
  std::string result(name);
  if (!result.empty() && result.back() == '\n') result.pop_back();
  return result;
}

kj::Own<kj::AsyncCapabilityStream> connectUnix(kj::AsyncIoContext& io, const std::string& path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    throw Error(ErrorCode::INVALID_ARGUMENT, "socket path too long (limit 107 bytes): " + path);
  }
  memcpy(address.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(ErrorCode::IO, std::string("socket: ") + strerror(errno));
  kj::AutoCloseFd owned(fd);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
    throw Error(ErrorCode::DISCONNECTED,
                "cannot connect to refstored at " + path + ": " + strerror(errno) +
                    " (is refstored running? see README)");
  }
  return io.lowLevelProvider->wrapUnixSocketFd(kj::mv(owned));
}

// Counts fork()s: pthread_atfork runs this in every child.
std::atomic<uint64_t> forks{0};
const int forkCounterRegistered = pthread_atfork(nullptr, nullptr, []() { forks++; });

uint64_t busyPollFromOptions(int micros) {
  if (micros < 0) {
    const char* env = getenv("REFSTORE_BUSY_POLL_US");
    micros = (env != nullptr && *env != 0) ? atoi(env) : 100;
  }
  return micros > 0 ? uint64_t(micros) * 1000 : 0;
}

}  // namespace

Mapping::~Mapping() {
  if (base != nullptr) munmap(base, size);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack it, older kernels say EINVAL
#endif

void Mapping::populateForWrite(size_t offset, size_t length) {
  static std::atomic<bool> unsupported{false};
  if (length == 0 || unsupported.load(std::memory_order_relaxed)) return;
  size_t blocks = (size + kPopulateBlock - 1) / kPopulateBlock;
  if (populatedBlocks.empty()) populatedBlocks.assign((blocks + 63) / 64, 0);
  auto isPopulated = [&](size_t b) { return (populatedBlocks[b / 64] >> (b % 64)) & 1; };
  size_t first = offset / kPopulateBlock;
  size_t end = std::min(blocks, (offset + length + kPopulateBlock - 1) / kPopulateBlock);
  for (size_t b = first; b < end;) {
    if (isPopulated(b)) {
      b++;
      continue;
    }
    size_t runEnd = b;
    while (runEnd < end && !isPopulated(runEnd)) runEnd++;
    size_t start = b * kPopulateBlock, stop = std::min(size, runEnd * kPopulateBlock);
    if (madvise(base + start, stop - start, MADV_POPULATE_WRITE) < 0) {
      // EINVAL: a kernel without MADV_POPULATE_WRITE; stop asking for the rest of the process
      // (writers then take a page fault per 4 KiB, as without any populating). Anything else
      // (e.g. ENOMEM under memory pressure) is not an error either: the writes will fault the
      // pages in themselves.
      if (errno == EINVAL) unsupported.store(true, std::memory_order_relaxed);
      return;
    }
    for (size_t i = b; i < runEnd; i++) populatedBlocks[i / 64] |= uint64_t(1) << (i % 64);
    b = runEnd;
  }
}

void Connection::throwError(const kj::Exception& e) {
  kj::StringPtr description = e.getDescription();
  // Remote exceptions arrive as "remote exception: refstore.CODE: message", and the client's
  // own errors thrown inside promise callbacks as "std::exception: refstore.CODE: message".
  const char* found = strstr(description.cStr(), "refstore.");
  if (found != nullptr) {
    const char* word = found + strlen("refstore.");
    for (auto& entry: kCodeWords) {
      size_t length = strlen(entry.word);
      if (strncmp(word, entry.word, length) == 0 && word[length] == ':') {
        throw Error(entry.code, found);
      }
    }
  }
  if (e.getType() == kj::Exception::Type::OVERLOADED &&
      strstr(description.cStr(), "refstore client timeout") != nullptr) {
    throw Error(ErrorCode::TIMEOUT, "timed out waiting for refstored");
  }
  if (e.getType() == kj::Exception::Type::DISCONNECTED) {
    throw Error(ErrorCode::DISCONNECTED, std::string("refstored disconnected: ") + description.cStr());
  }
  throw Error(ErrorCode::INTERNAL, description.cStr());
}

uint64_t forkGeneration() { return forks.load(std::memory_order_relaxed); }

ThreadLoop::ThreadLoop(): pid(getpid()) {}

std::shared_ptr<ThreadLoop> ThreadLoop::forThisThread() {
  thread_local std::weak_ptr<ThreadLoop> current;
  std::shared_ptr<ThreadLoop> loop = current.lock();
  if (loop && loop->affinity() == Affinity::FORKED_CHILD) {
    // Inherited from the parent, with the connections of the parent's handles: never run it or
    // destroy it (see dispose()). Only its WaitScope ends, which is what tells KJ that this
    // thread has no event loop any more, so that it may make one of its own.
    ThreadLoop* inherited = loop.get();
    leakOnPurpose(new std::shared_ptr<ThreadLoop>(std::move(loop)));
    inherited->io.waitScope.~WaitScope();
  }
  if (!loop) {
    loop = std::make_shared<ThreadLoop>();
    current = loop;
  }
  return loop;
}

void ThreadLoop::adoptOrphan(std::unique_ptr<Disposable> orphan) {
  std::lock_guard<std::mutex> lock(orphansMutex);
  orphans.push_back(std::move(orphan));
  hasOrphans.store(true, std::memory_order_release);
}

void ThreadLoop::destroyOrphans() {
  std::vector<std::unique_ptr<Disposable>> dropped;
  {
    std::lock_guard<std::mutex> lock(orphansMutex);
    dropped.swap(orphans);
    hasOrphans.store(false, std::memory_order_relaxed);
  }
  // Their destructors send the releases; the loop outlives them (`dropped` is destroyed while
  // the caller's own handle still holds this loop).
}

void Connection::checkUsable() {
  switch (loop->affinity()) {
    case Affinity::OWNER:
      break;
    case Affinity::OTHER_THREAD:
      throw Error(ErrorCode::MISUSE,
                  "refstore.MISUSE: a client and its handles belong to the thread that connected "
                  "it (one client per thread: connect a client on each thread that uses "
                  "refstore)");
    case Affinity::FORKED_CHILD:
      throw Error(ErrorCode::MISUSE,
                  "refstore.MISUSE: this client was connected by process " +
                      std::to_string(loop->pid) +
                      "; a forked child cannot use it (connect a client of its own; the handles "
                      "it inherited are neither usable nor released by the child)");
  }
  if (loop->hasOrphans.load(std::memory_order_acquire)) loop->destroyOrphans();
}

Connection::Connection(const ConnectOptions& options)
    : loop(ThreadLoop::forThisThread()), io(loop->io),
      busyPollNs(busyPollFromOptions(options.busyPollMicros)) {
  std::string address = options.address.empty() ? defaultSocketPath() : options.address;
  bool isTcp = address.rfind("tcp:", 0) == 0;
  if (isTcp) {
    try {
      auto target = io.provider->getNetwork().parseAddress(address.substr(4)).wait(io.waitScope);
      stream = target->connect().wait(io.waitScope);
    } catch (kj::Exception& e) {
      throw Error(ErrorCode::DISCONNECTED,
                  "cannot connect to refstored at " + address + ": " + e.getDescription().cStr());
    }
    messages = kj::heap<BatchingMessageStream>(*stream);
    network = kj::heap<capnp::TwoPartyVatNetwork>(*messages, capnp::rpc::twoparty::Side::CLIENT);
  } else {
    if (address.rfind("unix:", 0) == 0) address = address.substr(5);
    auto unixStream = connectUnix(io, address);
    messages = kj::heap<BatchingMessageStream>(*unixStream, *unixStream);
    // Up to 2 fds per message: a result carries at most one or two Segment capabilities.
    network = kj::heap<capnp::TwoPartyVatNetwork>(*messages, /*maxFdsPerMessage=*/2,
                                                  capnp::rpc::twoparty::Side::CLIENT);
    stream = kj::mv(unixStream);
  }
  rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network));
  capnp::MallocMessageBuilder vatId(4);
  vatId.getRoot<capnp::rpc::twoparty::VatId>().setSide(capnp::rpc::twoparty::Side::SERVER);
  store = rpc->bootstrap(vatId.getRoot<capnp::rpc::twoparty::VatId>()).castAs<proto::Store>();
  auto hello = store.helloRequest();
  std::string name = options.clientName.empty() ? programName() : options.clientName;
  hello.setClientName(name);
  hello.setSecret(kj::arrayPtr(reinterpret_cast<const kj::byte*>(options.secret.data()),
                               options.secret.size()));
  auto reply = wait(hello.send());
  sharedMemory = reply.getSharedMemory();
  writableSharedMemory = reply.getWritableSharedMemory();
}

Connection::~Connection() {
  mappings.clear();
}

void Connection::flush() {
  if (loop->waitsRunning > 0) {  // called from a callback of a blocking wait: flush after it
    loop->flushDeferred = true;
    return;
  }
  // poll() runs the loop until nothing is left, so messages queued by callbacks it runs go
  // out in the same poll; handles those callbacks drop must not poll again (counted as a wait).
  loop->waitsRunning++;
  KJ_DEFER({
    loop->waitsRunning--;
    loop->flushDeferred = false;
  });
  // A handle dropped inside a callback of a loop the application runs itself (async API) gets
  // here too: the poll is then a nested run of that loop, and not needed (the running loop
  // sends the queued messages itself); a failure inside it must not escape a destructor.
  try {
    io.waitScope.poll();
  } catch (kj::Exception&) {
  }
}

kj::Promise<Connection::Resolved> Connection::resolve(proto::Placement::Reader placement,
                                                      bool writable) {
  if (placement.getSegmentId() == 0) return Resolved{nullptr, nullptr};
  auto key = std::make_tuple(placement.getOrigin(), placement.getSegmentId(), writable);
  auto inside = [placement, writable](std::shared_ptr<Mapping> mapping) {
    if (placement.getOffset() + placement.getLength() > mapping->size) {
      throw Error(ErrorCode::INTERNAL, "refstore.INTERNAL: placement lies outside its segment");
    }
    if (writable) mapping->populateForWrite(placement.getOffset(), placement.getLength());
    uint8_t* data = mapping->base + placement.getOffset();
    return Resolved{std::move(mapping), data};
  };
  auto found = mappings.find(key);
  if (found != mappings.end()) return inside(found->second);
  // The fd belongs to the Segment capability (it arrived attached to the message that first
  // brought the capability to this connection): map it now. A dedicated segment's mapping
  // stays valid after its capability (and fd) are released; a shared one keeps its capability.
  return segmentWithFd(placement.getSegment())
      .then([this, key, placement, writable, inside](SegmentFd segment) {
        // Another resolve may have mapped it meanwhile.
        auto again = mappings.find(key);
        if (again != mappings.end()) return inside(again->second);
        size_t size = placement.getSegmentSize();
        bool dedicated = placement.getDedicated();
        // No MAP_POPULATE: see Mapping. A view's latency stays flat in the value's size.
        void* base = mmap(nullptr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ,
                          MAP_SHARED, segment.fd, 0);
        if (base == MAP_FAILED) {
          throw Error(ErrorCode::IO,
                      std::string("refstore.IO: mmap of shared segment failed: ") +
                          strerror(errno));
        }
        auto mapping = std::make_shared<Mapping>();
        mapping->base = static_cast<uint8_t*>(base);
        mapping->size = size;
        mappings.emplace(key, mapping);
        if (!dedicated) {
          mapping->segment = kj::mv(segment.capability);
        } else {
          // The daemon keeps freed dedicated segments idle and reuses them (same id) for the
          // next value of that size, so a writer putting large values again and again writes
          // into pages it already has. But a cached mapping keeps the pages allocated even after
          // the daemon frees the segment for good: keep only the most recent few.
          dedicatedOrder.push_back(key);
          if (dedicatedOrder.size() > kCachedDedicatedMappings) {
            mappings.erase(dedicatedOrder.front());  // users still holding it keep it mapped
            dedicatedOrder.pop_front();
          }
        }
        return inside(std::move(mapping));
      });
}

kj::Promise<Connection::SegmentFd> Connection::segmentWithFd(proto::Segment::Client segment,
                                                             bool reattached) {
  auto fd = segment.getFd();
  return fd.then([this, segment = kj::mv(segment),
                  reattached](kj::Maybe<int> fd) mutable -> kj::Promise<SegmentFd> {
    KJ_IF_MAYBE(f, fd) { return SegmentFd{kj::mv(segment), *f}; }
    if (reattached) {
      throw Error(ErrorCode::IO,
                  "refstore.IO: refstored sent a placement without a segment descriptor");
    }
    // The capability came without its fd: we dropped our import of it while this placement
    // was on its way (see Placement in the schema). Ask for one that carries the fd.
    return segment.reattachRequest().send().then(
        [this](capnp::Response<proto::Segment::ReattachResults> reply) {
          return segmentWithFd(reply.getSegment(), /*reattached=*/true);
        });
  });
}

RefState::~RefState() {
  ref = nullptr;
  connection->flush();  // push the Release out now, not at the next call
}

ViewState::~ViewState() {
  view = nullptr;
  connection->flush();
}

BufferState::~BufferState() {
  buffer = nullptr;
  if (releaseAtOnce) connection->flush();
}

FulfillerState::~FulfillerState() {
  fulfiller = nullptr;
  connection->flush();  // a dropped fulfiller breaks the promise: tell the daemon now
}

}  // namespace refstore::detail
