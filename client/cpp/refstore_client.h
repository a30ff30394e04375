// refstore C++ client: put values into refstored, get references back, read them zero-copy.
//
//   refstore::Client client = refstore::Client::connect();       // default socket
//   refstore::Ref ref = client.put("hello", 5);                  // copy path, small values
//   refstore::WriteBuffer buffer = client.create(1 << 20);       // large values: write in place
//   memset(buffer.data(), 7, buffer.size());
//   refstore::Ref big = buffer.seal();
//   refstore::View view = big.view();                            // zero-copy, pins the bytes
//   use(view.data(), view.size());
//   std::string token = big.share(60);                           // hand it to anyone
//
// Memory is managed by references: a Ref keeps its value alive and releases it when destroyed
// (or when the process dies); a View pins the bytes it points at until destroyed. Nothing is
// ever freed by hand.
//
// Threading: a Client, and every Ref/View/WriteBuffer made from it, belongs to the thread that
// created the Client (Cap'n Proto's event loop is per thread; Clients on one thread share it).
// Calls from another thread fail with MISUSE; a handle destroyed on another thread is released
// at the owning thread's next call. Processes: after fork() the child cannot use the parent's
// clients or handles (MISUSE), and destroying them in the child releases nothing of the
// parent's (the child's copies are leaked); a child connects clients of its own.
// Errors: every failure throws refstore::Error, whose code() names the problem.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "schema/refstore_error_codes.h"

namespace refstore {

// Stable error codes: the schema's ErrorCode enum (schema/refstore.capnp documents each one),
// numbered as there. The daemon's `refstore.<NAME>` code words map one to one.
enum class ErrorCode {
#define REFSTORE_ERROR_CODE_ENUMERATOR(number, NAME, summary) NAME = number,
  REFSTORE_ERROR_CODES(REFSTORE_ERROR_CODE_ENUMERATOR)
#undef REFSTORE_ERROR_CODE_ENUMERATOR
};

// "NOT_FOUND" etc.
const char* errorCodeName(ErrorCode code);

class Error: public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), errorCode(code) {}
  ErrorCode code() const { return errorCode; }

 private:
  ErrorCode errorCode;
};

// 128-bit object id (display only: there is no get-by-id).
struct ObjectId {
  uint64_t origin = 0, serial = 0;
  std::string hex() const;  // 32 lowercase hex digits
};

struct ObjectInfo {
  ObjectId id;
  uint64_t size = 0;
  uint64_t hashHigh = 0, hashLow = 0;  // XXH3-128, set at seal
  std::string state;                    // "creating", "sealed", ...
};

struct Stats {
  uint64_t objects = 0, bytesUsed = 0, capacity = 0;
  uint32_t clients = 0, segments = 0;
  uint64_t segmentBytes = 0, holders = 0, tokens = 0, pinnedDead = 0;
  uint64_t creating = 0, sealed = 0, uptimeMs = 0, putsTotal = 0, reclaimedTotal = 0;
  uint64_t promised = 0, failed = 0, names = 0;
  // Memory pressure (bytesUsed is what is in shared memory):
  uint64_t spilled = 0, spilledBytes = 0, spillFiles = 0, spillsTotal = 0, spilledBytesTotal = 0;
  uint64_t restoresTotal = 0, restoredBytesTotal = 0, spillFailuresTotal = 0, fileBackedBytes = 0;
  uint32_t queueLength = 0;
  uint64_t oldestWaiterMs = 0;
  uint64_t backgroundHashesTotal = 0;  // values over 1 MiB hashed after sealing (see schema)
  uint64_t lastReclaimMonoUs = 0;      // when an object was last freed: CLOCK_MONOTONIC, µs
  // Many hosts (schema: Stats):
  uint64_t proxies = 0, proxyBytes = 0, remoteHolders = 0, detachedHolders = 0;
  uint32_t peers = 0, pullsInFlight = 0;
  uint64_t bytesPulledTotal = 0, bytesServedTotal = 0, pullsTotal = 0, ownerLost = 0;
  uint32_t prefetchesWaiting = 0;  // of queueLength: Ref.prefetch copies nobody reads yet
  uint64_t bytesRelayedTotal = 0;  // of bytesPulledTotal: from another reader, not the owner
};

// One connection to another daemon (Client::peers, `refctl peers`).
struct PeerInfo {
  uint64_t origin = 0;
  std::string address, state;  // state: "connecting", "up" or "down"
  bool outgoing = false;
  uint64_t heldByPeer = 0, heldFromPeer = 0, bytesPulled = 0, bytesServed = 0, lastHeardMs = 0;
};

// Every counter of `stats` by name, in the order and with the names `refctl stats` prints
// (snake_case), for printing and for bindings that want them all (the C ABI's JSON).
struct NamedCounter {
  const char* name;
  uint64_t value;
};
std::vector<NamedCounter> namedCounters(const Stats& stats);

struct HolderInfo {
  uint64_t clientId = 0;
  std::string label;
  int pid = 0;
  uint64_t heldMs = 0;
  uint64_t peerOrigin = 0;  // another daemon's remote holder (0: a local client)
  bool detached = false;    // its daemon's connection is down (grace period)
};

struct ObjectListing {
  ObjectInfo info;
  std::vector<HolderInfo> holders;         // the first few (Store.list names at most 32)
  uint32_t holderCount = 0;                // holders in all
  uint32_t tokens = 0, pins = 0;
  uint64_t ageMs = 0;
  bool dead = false;
  std::vector<uint64_t> tokenExpiriesMs;   // per live token: ms until it expires
  std::vector<std::string> names;
  std::vector<ObjectId> parents, children;
  uint64_t oldestHoldMs = 0;               // longest-standing current holder
  std::string ownerAddress;                // a proxy of another daemon's object: its owner
  bool bytesLocal = false, ownerLost = false;
};

struct NameBinding {
  std::string name;
  ObjectId id;
};

namespace detail {
struct Connection;
struct RefState;
struct ViewState;
struct BufferState;
struct FulfillerState;
struct Factory;
}  // namespace detail

// A zero-copy, read-only window on a sealed value. Valid until destroyed or moved from.
class View {
 public:
  View(View&&) noexcept;
  View& operator=(View&&) noexcept;
  ~View();

  const uint8_t* data() const;
  size_t size() const;

 private:
  friend struct detail::Factory;
  explicit View(std::unique_ptr<detail::ViewState> state);
  std::unique_ptr<detail::ViewState> state;
};

// A reference to an immutable value held in refstored.
class Ref {
 public:
  Ref(Ref&&) noexcept;
  Ref& operator=(Ref&&) noexcept;
  ~Ref();  // releases this reference

  ObjectInfo info() const;
  size_t size() const;
  // Copy path: up to `length` bytes from `offset` (any length; chunked under the hood).
  std::vector<uint8_t> read(uint64_t offset, uint64_t length) const;
  // The whole value, copied (zero-copy view + one memcpy when shared memory is available).
  // Waits for a promise like view(); TIMEOUT after `timeoutSeconds` (negative: no limit).
  std::vector<uint8_t> readAll(double timeoutSeconds = -1) const;
  // Zero-copy view (Unix socket connections only). A promise is waited for first; TIMEOUT after
  // `timeoutSeconds` (negative: no limit). The Ref must be direct (from this client, or
  // adopted): a Ref proxied through another process carries no file descriptor, so view()
  // fails with IO for it while read() works.
  View view(double timeoutSeconds = -1) const;
  // A printable token that Client::restore turns back into a Ref, valid for `ttlSeconds` and
  // `uses` restores (0 = unlimited). The token keeps the value alive until then.
  std::string share(uint32_t ttlSeconds, uint32_t uses = 0) const;

  // Waits until the value exists (immediately unless this is a promise) and returns its info.
  // Throws REJECTED / BROKEN_PROMISE if the promise failed, TIMEOUT after `timeoutSeconds`
  // (negative: wait forever). read/readAll/view wait the same way by themselves.
  ObjectInfo whenReady(double timeoutSeconds = -1) const;
  // Brings the bytes into this host's memory ahead of a read (another host's value is copied
  // now; a spilled one comes back from disk) and waits until they are there (Ref.prefetch).
  // To prefetch without waiting, use async::prefetch and keep or drop the promise.
  void prefetch(double timeoutSeconds = -1) const;
  // New Refs to the nested references this value was sealed with.
  std::vector<Ref> children() const;
  // Pins the value under `name` until Client::unname (see Client::lookup).
  void saveAs(const std::string& name) const;

 private:
  friend struct detail::Factory;
  explicit Ref(std::unique_ptr<detail::RefState> state);
  std::unique_ptr<detail::RefState> state;
};

struct SharedValue;

// A reserved value being written. Write it (in place via data(), or with write()), then seal().
// Destroying it unsealed aborts the value and frees the space.
class WriteBuffer {
 public:
  WriteBuffer(WriteBuffer&&) noexcept;
  WriteBuffer& operator=(WriteBuffer&&) noexcept;
  ~WriteBuffer();

  // Writable shared memory of size() bytes, or nullptr when this connection has none (TCP):
  // then use write().
  uint8_t* data();
  size_t size() const;
  // Copies bytes into the buffer at `offset` (works with or without shared memory).
  void write(uint64_t offset, const void* bytes, size_t length);
  // Makes the value immutable and returns its first Ref. The buffer is empty afterwards.
  // `children` are nested references the value keeps alive (see Client::put).
  Ref seal(const std::vector<const Ref*>& children = {});
  // seal() and then Ref::share(ttlSeconds, uses) on the new Ref, in one round trip instead of
  // two (the share is pipelined on the seal): what a producer handing a value to another
  // process calls. Errors as seal's, then as share's.
  SharedValue sealAndShare(uint32_t ttlSeconds, uint32_t uses = 0,
                           const std::vector<const Ref*>& children = {});

 private:
  friend struct detail::Factory;
  explicit WriteBuffer(std::unique_ptr<detail::BufferState> state);
  std::unique_ptr<detail::BufferState> state;
};

// The write side of a promise (Client::promise). Exactly one of fulfill / fulfillWith / reject
// succeeds. Destroying it unsettled breaks the promise: readers get BROKEN_PROMISE.
class Fulfiller {
 public:
  Fulfiller(Fulfiller&&) noexcept;
  Fulfiller& operator=(Fulfiller&&) noexcept;
  ~Fulfiller();

  // The value inline (at most 16 MiB), with optional nested references.
  void fulfill(const void* data, size_t size, const std::vector<const Ref*>& children = {});
  // Alias another object (no copy): for large values, create + seal, then fulfillWith.
  void fulfillWith(const Ref& value);
  // Readers get REJECTED with `reason`.
  void reject(const std::string& reason);

 private:
  friend struct detail::Factory;
  explicit Fulfiller(std::unique_ptr<detail::FulfillerState> state);
  std::unique_ptr<detail::FulfillerState> state;
};

// A future: its Ref exists at once (share it, nest it, pass it on); the value comes later.
struct Promise {
  Ref ref;
  Fulfiller fulfiller;
};

// WriteBuffer::sealAndShare's result: the sealed value's first Ref and a share token for it.
struct SharedValue {
  Ref ref;
  std::string token;
};

// One value for Client::putMany: `size` bytes at `data`.
struct Bytes {
  const void* data;
  size_t size;
};

struct ConnectOptions {
  // "" = the default socket (see README); "/path" or "unix:/path"; "tcp:host:port".
  std::string address;
  // Label shown in `refctl ls`; "" = this program's name.
  std::string clientName;
  // Cluster secret for TCP listeners that require one.
  std::string secret;
  // A blocking call polls for its reply this long (microseconds) before sleeping. Waking a
  // sleeping thread costs ~60 us on virtual machines, more than a small request takes; a short
  // spin returns the moment the reply lands. -1: $REFSTORE_BUSY_POLL_US if set, else 100;
  // 0: always sleep.
  int busyPollMicros = -1;
};

class Client {
 public:
  static Client connect(const ConnectOptions& options = {});
  static Client connect(const std::string& address);
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Stores a copy of `size` bytes (at most 16 MiB; use create() for larger values). The new
  // value keeps `children` (nested references) alive until it is itself freed. Waits for room
  // like create().
  Ref put(const void* data, size_t size, const std::vector<const Ref*>& children = {},
          double timeoutSeconds = 0);
  // put() for many small values in one round trip: result[i] holds a copy of values[i]. Far
  // fewer messages than one put() per value, which is what limits small-value throughput.
  // All or nothing: INVALID_ARGUMENT for an empty value (none is stored), TOO_LARGE past
  // 65,536 values or 16 MiB in all, OUT_OF_MEMORY as put().
  std::vector<Ref> putMany(const std::vector<Bytes>& values, double timeoutSeconds = 0);
  // Every byte of each of `refs` in one round trip (copy path, like Ref::read): result[i] is
  // the value of *refs[i]; promises are waited for. TOO_LARGE past 65,536 Refs or 16 MiB in
  // all (read large values one by one, or view them).
  std::vector<std::vector<uint8_t>> readMany(const std::vector<const Ref*>& refs);
  // Reserves `size` bytes for a new value. When memory is full the daemon queues the request
  // (first come, first served) while it spills older values to disk or others free theirs;
  // OUT_OF_MEMORY after `timeoutSeconds` (0: the daemon's default, 30 s).
  WriteBuffer create(uint64_t size, double timeoutSeconds = 0);
  // Stores `size` bytes of any size: create + write + seal.
  Ref putLarge(const void* data, uint64_t size);
  // Turns a share token into a new Ref.
  Ref restore(const std::string& token);
  // restore(token).view(timeoutSeconds) in one round trip instead of two (the view is pipelined
  // on the restore): what a consumer handed a token calls. No Ref is kept; the View alone pins
  // the value. Errors as restore's (NOT_FOUND, EXPIRED, MALFORMED, WRONG_STORE), then as
  // Ref::view's.
  View restoreView(const std::string& token, double timeoutSeconds = -1);
  Stats stats();
  std::vector<ObjectListing> list();
  // The connections to other daemons.
  std::vector<PeerInfo> peers();

  // A new Ref on this client's own connection to `ref`'s value, where `ref` belongs to another
  // Client (of the same daemon), so that the other may go away (Store.adopt).
  Ref adopt(const Ref& ref);

  // A future whose value a Fulfiller provides later.
  Promise promise();
  // A new Ref to the value pinned under `name` (Ref::saveAs); NOT_FOUND if none.
  Ref lookup(const std::string& name);
  // Drops the name pin; the value is freed if nothing else references it.
  void unname(const std::string& name);
  std::vector<NameBinding> names();

  // Whether this connection reads (and writes) through shared memory.
  bool sharedMemory() const;
  bool writableSharedMemory() const;

 private:
  friend struct detail::Factory;
  explicit Client(std::shared_ptr<detail::Connection> connection);
  std::shared_ptr<detail::Connection> connection;
};

}  // namespace refstore
