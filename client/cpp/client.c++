// The public C++ client API (refstore_client.h, refstore_async.h) over detail::Connection.
// Every operation is written once, asynchronously; the blocking calls wait on it.
#include <string.h>

#include "client/cpp/connection.h"
#include "client/cpp/refstore_async.h"

namespace refstore {
namespace {

// Copy-path chunk size: well under the protocol's 16 MiB limit, big enough to amortise calls.
constexpr uint64_t kChunk = 4 << 20;

const char* stateName(proto::ObjectState state) {
  switch (state) {
    case proto::ObjectState::CREATING: return "creating";
    case proto::ObjectState::SEALED: return "sealed";
    case proto::ObjectState::PROMISED: return "promised";
    case proto::ObjectState::FAILED: return "failed";
    case proto::ObjectState::SPILLED: return "spilled";
    case proto::ObjectState::REMOTE: return "remote";
  }
  return "unknown";
}

ObjectId toId(proto::ObjectId::Reader id) { return ObjectId{id.getOrigin(), id.getSerial()}; }

ObjectInfo toInfo(proto::ObjectInfo::Reader info) {
  ObjectInfo out;
  out.id = toId(info.getId());
  out.size = info.getSize();
  out.hashHigh = info.getHash().getHigh();
  out.hashLow = info.getHash().getLow();
  out.state = stateName(info.getState());
  return out;
}

template <typename Builder>
void setChildren(Builder&& builder, const std::vector<const Ref*>& children) {
  if (children.empty()) return;
  auto list = builder.initChildren(children.size());
  for (size_t i = 0; i < children.size(); i++) list.set(i, async::capability(*children[i]));
}

}  // namespace

namespace detail {

Ref Factory::ref(std::shared_ptr<Connection> connection, proto::Ref::Client ref) {
  auto state = std::make_unique<RefState>();
  state->connection = std::move(connection);
  state->ref = kj::mv(ref);
  return Ref(std::move(state));
}

Fulfiller Factory::fulfiller(std::shared_ptr<Connection> connection,
                             proto::Fulfiller::Client fulfiller) {
  auto state = std::make_unique<FulfillerState>();
  state->connection = std::move(connection);
  state->fulfiller = kj::mv(fulfiller);
  return Fulfiller(std::move(state));
}

}  // namespace detail

using detail::Factory;

const char* errorCodeName(ErrorCode code) {
  switch (code) {
#define REFSTORE_ERROR_CODE_NAME(number, NAME, summary) \
  case ErrorCode::NAME:                                \
    return #NAME;
    REFSTORE_ERROR_CODES(REFSTORE_ERROR_CODE_NAME)
#undef REFSTORE_ERROR_CODE_NAME
  }
  return "UNKNOWN";
}

std::string ObjectId::hex() const {
  char text[33];
  snprintf(text, sizeof(text), "%016llx%016llx", (unsigned long long)origin,
           (unsigned long long)serial);
  return text;
}

// --- async ---------------------------------------------------------------------------------

namespace async {

kj::AsyncIoContext& ioContext(Client& client) { return Factory::usable(client)->io; }

proto::Ref::Client capability(const Ref& ref) { return Factory::state(ref).ref; }

proto::Store::Client store(Client& client) { return Factory::usable(client)->store; }

Ref wrap(Client& client, proto::Ref::Client ref) {
  return Factory::ref(Factory::usable(client), kj::mv(ref));
}

static uint32_t timeoutMillis(double seconds) {
  if (seconds <= 0) return 0;  // the daemon's default
  return static_cast<uint32_t>(std::min(seconds * 1000, 4.0e9));
}

kj::Promise<Ref> put(Client& client, kj::ArrayPtr<const kj::byte> data,
                     std::vector<const Ref*> children, double timeoutSeconds) {
  auto connection = Factory::usable(client);
  auto request = connection->store.putRequest();
  request.setData(data);
  request.setTimeoutMs(timeoutMillis(timeoutSeconds));
  setChildren(request, children);
  return request.send().then([connection](capnp::Response<proto::Store::PutResults> reply) {
    return Factory::ref(connection, reply.getRef());
  });
}

kj::Promise<std::vector<Ref>> putMany(Client& client,
                                      std::vector<kj::ArrayPtr<const kj::byte>> values,
                                      double timeoutSeconds) {
  auto connection = Factory::usable(client);
  auto request = connection->store.putManyRequest();
  auto list = request.initValues(values.size());
  for (size_t i = 0; i < values.size(); i++) list.set(i, values[i]);
  request.setTimeoutMs(timeoutMillis(timeoutSeconds));
  return request.send().then(
      [connection](capnp::Response<proto::Store::PutManyResults> reply) {
        std::vector<Ref> refs;
        refs.reserve(reply.getRefs().size());
        for (auto ref: reply.getRefs()) refs.push_back(Factory::ref(connection, ref));
        return refs;
      });
}

kj::Promise<std::vector<std::vector<uint8_t>>> readMany(Client& client,
                                                       std::vector<const Ref*> refs) {
  auto connection = Factory::usable(client);
  auto request = connection->store.readManyRequest();
  auto list = request.initRefs(refs.size());
  for (size_t i = 0; i < refs.size(); i++) list.set(i, capability(*refs[i]));
  return request.send().then([](capnp::Response<proto::Store::ReadManyResults> reply) {
    std::vector<std::vector<uint8_t>> values;
    values.reserve(reply.getValues().size());
    for (auto data: reply.getValues()) values.emplace_back(data.begin(), data.end());
    return values;
  });
}

kj::Promise<WriteBuffer> create(Client& client, uint64_t size, double timeoutSeconds) {
  auto connection = Factory::usable(client);
  auto request = connection->store.createRequest();
  request.setSize(size);
  request.setTimeoutMs(timeoutMillis(timeoutSeconds));
  return request.send().then(
      [connection, size](capnp::Response<proto::Store::CreateResults> reply) mutable {
        auto state = std::make_unique<detail::BufferState>();
        state->connection = connection;
        state->buffer = reply.getBuffer();
        state->size = size;
        state->data = nullptr;
        if (!reply.hasPlacement()) return kj::Promise<WriteBuffer>(Factory::buffer(std::move(state)));
        return connection->resolve(reply.getPlacement(), /*writable=*/true)
            .attach(kj::mv(reply))
            .then([state = std::move(state)](detail::Connection::Resolved resolved) mutable {
              state->mapping = std::move(resolved.mapping);
              state->data = resolved.data;
              return Factory::buffer(std::move(state));
            });
      });
}

// Sends `buffer`'s seal; sealedRef turns the answer into the Ref. Split so that sealAndShare
// can pipeline its share on the answer in between.
static capnp::RemotePromise<proto::WriteBuffer::SealResults> sendSeal(
    WriteBuffer& buffer, const std::vector<const Ref*>& children) {
  auto request = Factory::state(buffer).buffer.sealRequest();
  setChildren(request, children);
  return request.send();
}

static kj::Promise<Ref> sealedRef(
    kj::Promise<capnp::Response<proto::WriteBuffer::SealResults>> sealed, WriteBuffer buffer) {
  auto connection = Factory::state(buffer).connection;
  return sealed.then([connection, buffer = std::move(buffer)](
                         capnp::Response<proto::WriteBuffer::SealResults> reply) mutable {
    Factory::clear(buffer);  // the buffer's hold passed to the Ref
    return Factory::ref(connection, reply.getRef());
  });
}

kj::Promise<Ref> seal(WriteBuffer buffer, std::vector<const Ref*> children) {
  auto sealed = sendSeal(buffer, children);
  return sealedRef(kj::mv(sealed), std::move(buffer));
}

kj::Promise<SharedValue> sealAndShare(WriteBuffer buffer, uint32_t ttlSeconds, uint32_t uses,
                                      std::vector<const Ref*> children) {
  auto sealed = sendSeal(buffer, children);
  // Pipelined on the seal's answer, so one round trip does both; if the seal fails, so does
  // the share, and the seal's error is the one reported.
  auto shareRequest = sealed.getRef().shareRequest();
  shareRequest.setTtlSeconds(ttlSeconds);
  shareRequest.setUses(uses);
  auto shared = shareRequest.send();
  return sealedRef(kj::mv(sealed), std::move(buffer))
      .then([shared = kj::mv(shared)](Ref ref) mutable {
        return shared.then([ref = std::move(ref)](
                               capnp::Response<proto::Ref::ShareResults> reply) mutable {
          return SharedValue{std::move(ref), reply.getToken().cStr()};
        });
      });
}

kj::Promise<Ref> restore(Client& client, std::string token) {
  auto connection = Factory::usable(client);
  auto request = connection->store.restoreRequest();
  request.setToken(token);
  return request.send().then([connection](capnp::Response<proto::Store::RestoreResults> reply) {
    return Factory::ref(connection, reply.getRef());
  });
}

// Turns a View reply into a View: maps the placement's segment (cached) and keeps the pin.
static kj::Promise<View> mapView(std::shared_ptr<detail::Connection> connection,
                                 capnp::Response<proto::Ref::ViewResults> reply) {
  auto placement = reply.getPlacement();
  auto state = std::make_unique<detail::ViewState>();
  state->connection = connection;
  state->view = reply.getView();
  state->size = placement.getLength();
  return connection->resolve(placement, /*writable=*/false)
      .attach(kj::mv(reply))
      .then([state = std::move(state)](detail::Connection::Resolved resolved) mutable {
        state->mapping = std::move(resolved.mapping);
        state->data = resolved.data;
        return Factory::view(std::move(state));
      });
}

kj::Promise<View> view(const Ref& ref) {
  auto connection = Factory::state(ref).connection;
  return Factory::state(ref).ref.viewRequest().send().then(
      [connection](capnp::Response<proto::Ref::ViewResults> reply) {
        return mapView(connection, kj::mv(reply));
      });
}

kj::Promise<View> restoreView(Client& client, std::string token) {
  auto connection = Factory::usable(client);
  auto request = connection->store.restoreRequest();
  request.setToken(token);
  auto restored = request.send();
  // Pipelined on the restore's answer: both calls leave in one write, and the daemon answers
  // both in one turn. A bad token fails the view with the restore's own error.
  auto viewed = restored.getRef().viewRequest().send();
  // Waiting for the restore first keeps its question open until the view is answered; its
  // Ref is then dropped, since the View pins the value by itself.
  return restored.ignoreResult()
      .then([viewed = kj::mv(viewed)]() mutable { return kj::mv(viewed); })
      .then([connection](capnp::Response<proto::Ref::ViewResults> reply) {
        return mapView(connection, kj::mv(reply));
      });
}

kj::Promise<ObjectInfo> whenReady(const Ref& ref) {
  return Factory::state(ref).ref.whenReadyRequest().send().then(
      [](capnp::Response<proto::Ref::WhenReadyResults> reply) { return toInfo(reply.getInfo()); });
}

kj::Promise<void> prefetch(const Ref& ref) {
  return Factory::state(ref).ref.prefetchRequest().send().ignoreResult();
}

kj::Promise<Ref> adopt(Client& client, proto::Ref::Client ref) {
  auto connection = Factory::usable(client);
  auto request = connection->store.adoptRequest();
  request.setRef(kj::mv(ref));
  return request.send().then([connection](capnp::Response<proto::Store::AdoptResults> reply) {
    return Factory::ref(connection, reply.getRef());
  });
}

}  // namespace async

// --- View ------------------------------------------------------------------------------

View::View(std::unique_ptr<detail::ViewState> state): state(std::move(state)) {}
View::View(View&&) noexcept = default;
View& View::operator=(View&& other) noexcept {
  if (this != &other) {
    detail::dispose(std::move(state));
    state = std::move(other.state);
  }
  return *this;
}
View::~View() { detail::dispose(std::move(state)); }
const uint8_t* View::data() const { return state ? state->data : nullptr; }
size_t View::size() const { return state ? state->size : 0; }

// --- Ref -------------------------------------------------------------------------------

Ref::Ref(std::unique_ptr<detail::RefState> state): state(std::move(state)) {}
Ref::Ref(Ref&&) noexcept = default;
Ref& Ref::operator=(Ref&& other) noexcept {
  if (this != &other) {
    detail::dispose(std::move(state));
    state = std::move(other.state);
  }
  return *this;
}
Ref::~Ref() { detail::dispose(std::move(state)); }

ObjectInfo Ref::info() const {
  auto& s = Factory::state(*this);
  auto reply = s.connection->wait(s.ref.infoRequest().send());
  return toInfo(reply.getInfo());
}

size_t Ref::size() const { return whenReady().size; }

std::vector<uint8_t> Ref::read(uint64_t offset, uint64_t length) const {
  auto& s = Factory::state(*this);
  std::vector<uint8_t> out;
  while (length > 0) {
    auto request = s.ref.readRequest();
    request.setOffset(offset);
    request.setLength(std::min(length, kChunk));
    auto reply = s.connection->wait(request.send());
    auto data = reply.getData();
    if (data.size() == 0) break;  // end of the value
    out.insert(out.end(), data.begin(), data.end());
    offset += data.size();
    length -= data.size();
  }
  return out;
}

std::vector<uint8_t> Ref::readAll(double timeoutSeconds) const {
  if (Factory::state(*this).connection->sharedMemory) {
    View pinned = view(timeoutSeconds);
    return std::vector<uint8_t>(pinned.data(), pinned.data() + pinned.size());
  }
  return read(0, whenReady(timeoutSeconds).size);
}

View Ref::view(double timeoutSeconds) const {
  return Factory::state(*this).connection->wait(async::view(*this), timeoutSeconds);
}

std::string Ref::share(uint32_t ttlSeconds, uint32_t uses) const {
  auto& s = Factory::state(*this);
  auto request = s.ref.shareRequest();
  request.setTtlSeconds(ttlSeconds);
  request.setUses(uses);
  auto reply = s.connection->wait(request.send());
  return reply.getToken().cStr();
}

ObjectInfo Ref::whenReady(double timeoutSeconds) const {
  return Factory::state(*this).connection->wait(async::whenReady(*this), timeoutSeconds);
}

void Ref::prefetch(double timeoutSeconds) const {
  Factory::state(*this).connection->wait(async::prefetch(*this), timeoutSeconds);
}

std::vector<Ref> Ref::children() const {
  auto& s = Factory::state(*this);
  auto reply = s.connection->wait(s.ref.childrenRequest().send());
  std::vector<Ref> out;
  for (auto child: reply.getChildren()) out.push_back(Factory::ref(s.connection, child));
  return out;
}

void Ref::saveAs(const std::string& name) const {
  auto& s = Factory::state(*this);
  auto request = s.ref.saveAsRequest();
  request.setName(name);
  s.connection->wait(request.send());
}

// --- WriteBuffer -----------------------------------------------------------------------

WriteBuffer::WriteBuffer(std::unique_ptr<detail::BufferState> state): state(std::move(state)) {}
WriteBuffer::WriteBuffer(WriteBuffer&&) noexcept = default;
WriteBuffer& WriteBuffer::operator=(WriteBuffer&& other) noexcept {
  if (this != &other) {
    detail::dispose(std::move(state));
    state = std::move(other.state);
  }
  return *this;
}
WriteBuffer::~WriteBuffer() { detail::dispose(std::move(state)); }

uint8_t* WriteBuffer::data() { return state ? state->data : nullptr; }
size_t WriteBuffer::size() const { return state ? state->size : 0; }

void WriteBuffer::write(uint64_t offset, const void* bytes, size_t length) {
  Factory::state(*this);  // sealed, other thread, forked child
  if (offset > state->size || length > state->size - offset) {
    throw Error(ErrorCode::OUT_OF_RANGE, "write of " + std::to_string(length) +
                                             " bytes at offset " + std::to_string(offset) +
                                             " overruns the " + std::to_string(state->size) +
                                             "-byte buffer");
  }
  if (state->data != nullptr) {
    memcpy(state->data + offset, bytes, length);
    return;
  }
  auto source = static_cast<const kj::byte*>(bytes);
  for (uint64_t done = 0; done < length;) {
    uint64_t chunk = std::min<uint64_t>(kChunk, length - done);
    auto request = state->buffer.writeRequest();
    request.setOffset(offset + done);
    request.setData(kj::arrayPtr(source + done, chunk));
    state->connection->wait(request.send());
    done += chunk;
  }
}

Ref WriteBuffer::seal(const std::vector<const Ref*>& children) {
  auto connection = Factory::state(*this).connection;
  return connection->wait(async::seal(std::move(*this), children));
}

SharedValue WriteBuffer::sealAndShare(uint32_t ttlSeconds, uint32_t uses,
                                      const std::vector<const Ref*>& children) {
  auto connection = Factory::state(*this).connection;
  return connection->wait(async::sealAndShare(std::move(*this), ttlSeconds, uses, children));
}

// --- Fulfiller -------------------------------------------------------------------------

Fulfiller::Fulfiller(std::unique_ptr<detail::FulfillerState> state): state(std::move(state)) {}
Fulfiller::Fulfiller(Fulfiller&&) noexcept = default;
Fulfiller& Fulfiller::operator=(Fulfiller&& other) noexcept {
  if (this != &other) {
    detail::dispose(std::move(state));
    state = std::move(other.state);
  }
  return *this;
}
Fulfiller::~Fulfiller() { detail::dispose(std::move(state)); }

void Fulfiller::fulfill(const void* data, size_t size, const std::vector<const Ref*>& children) {
  auto& s = Factory::state(*this);
  auto request = s.fulfiller.fulfillRequest();
  request.setData(kj::arrayPtr(static_cast<const kj::byte*>(data), size));
  setChildren(request, children);
  s.connection->wait(request.send());
}

void Fulfiller::fulfillWith(const Ref& value) {
  auto& s = Factory::state(*this);
  auto request = s.fulfiller.fulfillWithRequest();
  request.setRef(async::capability(value));
  s.connection->wait(request.send());
}

void Fulfiller::reject(const std::string& reason) {
  auto& s = Factory::state(*this);
  auto request = s.fulfiller.rejectRequest();
  request.setReason(reason);
  s.connection->wait(request.send());
}

// --- Client ----------------------------------------------------------------------------

Client::Client(std::shared_ptr<detail::Connection> connection)
    : connection(std::move(connection)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    detail::dispose(std::move(connection));
    connection = std::move(other.connection);
  }
  return *this;
}
Client::~Client() { detail::dispose(std::move(connection)); }

Client Client::connect(const ConnectOptions& options) {
  try {
    return Client(std::make_shared<detail::Connection>(options));
  } catch (kj::Exception& e) {
    detail::Connection::throwError(e);
  }
}

Client Client::connect(const std::string& address) {
  ConnectOptions options;
  options.address = address;
  return connect(options);
}

Ref Client::put(const void* data, size_t size, const std::vector<const Ref*>& children,
                double timeoutSeconds) {
  return connection->wait(async::put(
      *this, kj::arrayPtr(static_cast<const kj::byte*>(data), size), children, timeoutSeconds));
}

std::vector<Ref> Client::putMany(const std::vector<Bytes>& values, double timeoutSeconds) {
  std::vector<kj::ArrayPtr<const kj::byte>> spans;
  spans.reserve(values.size());
  for (const Bytes& v: values) {
    spans.push_back(kj::arrayPtr(static_cast<const kj::byte*>(v.data), v.size));
  }
  return connection->wait(async::putMany(*this, std::move(spans), timeoutSeconds));
}

std::vector<std::vector<uint8_t>> Client::readMany(const std::vector<const Ref*>& refs) {
  return connection->wait(async::readMany(*this, refs));
}

WriteBuffer Client::create(uint64_t size, double timeoutSeconds) {
  return connection->wait(async::create(*this, size, timeoutSeconds));
}

Ref Client::putLarge(const void* data, uint64_t size) {
  WriteBuffer buffer = create(size);
  buffer.write(0, data, size);
  return buffer.seal();
}

Ref Client::restore(const std::string& token) {
  return connection->wait(async::restore(*this, token));
}

View Client::restoreView(const std::string& token, double timeoutSeconds) {
  return connection->wait(async::restoreView(*this, token), timeoutSeconds);
}

Stats Client::stats() {
  connection->checkUsable();
  auto reply = connection->wait(connection->store.statsRequest().send());
  auto s = reply.getStats();
  Stats out;
  out.objects = s.getObjects();
  out.bytesUsed = s.getBytesUsed();
  out.capacity = s.getCapacity();
  out.clients = s.getClients();
  out.segments = s.getSegments();
  out.segmentBytes = s.getSegmentBytes();
  out.holders = s.getHolders();
  out.tokens = s.getTokens();
  out.pinnedDead = s.getPinnedDead();
  out.creating = s.getCreating();
  out.sealed = s.getSealed();
  out.uptimeMs = s.getUptimeMs();
  out.putsTotal = s.getPutsTotal();
  out.reclaimedTotal = s.getReclaimedTotal();
  out.promised = s.getPromised();
  out.failed = s.getFailed();
  out.names = s.getNames();
  out.spilled = s.getSpilled();
  out.spilledBytes = s.getSpilledBytes();
  out.spillFiles = s.getSpillFiles();
  out.spillsTotal = s.getSpillsTotal();
  out.spilledBytesTotal = s.getSpilledBytesTotal();
  out.restoresTotal = s.getRestoresTotal();
  out.restoredBytesTotal = s.getRestoredBytesTotal();
  out.spillFailuresTotal = s.getSpillFailuresTotal();
  out.fileBackedBytes = s.getFileBackedBytes();
  out.queueLength = s.getQueueLength();
  out.oldestWaiterMs = s.getOldestWaiterMs();
  out.backgroundHashesTotal = s.getBackgroundHashesTotal();
  out.lastReclaimMonoUs = s.getLastReclaimMonoUs();
  out.proxies = s.getProxies();
  out.proxyBytes = s.getProxyBytes();
  out.remoteHolders = s.getRemoteHolders();
  out.detachedHolders = s.getDetachedHolders();
  out.peers = s.getPeers();
  out.pullsInFlight = s.getPullsInFlight();
  out.bytesPulledTotal = s.getBytesPulledTotal();
  out.bytesServedTotal = s.getBytesServedTotal();
  out.pullsTotal = s.getPullsTotal();
  out.ownerLost = s.getOwnerLost();
  out.prefetchesWaiting = s.getPrefetchesWaiting();
  out.bytesRelayedTotal = s.getBytesRelayedTotal();
  return out;
}

std::vector<PeerInfo> Client::peers() {
  connection->checkUsable();
  auto reply = connection->wait(connection->store.peersRequest().send());
  std::vector<PeerInfo> out;
  for (auto row: reply.getPeers()) {
    PeerInfo peer;
    peer.origin = row.getOrigin();
    peer.address = row.getAddress();
    peer.state = row.getState();
    peer.outgoing = row.getOutgoing();
    peer.heldByPeer = row.getHeldByPeer();
    peer.heldFromPeer = row.getHeldFromPeer();
    peer.bytesPulled = row.getBytesPulled();
    peer.bytesServed = row.getBytesServed();
    peer.lastHeardMs = row.getLastHeardMs();
    out.push_back(std::move(peer));
  }
  return out;
}

std::vector<NamedCounter> namedCounters(const Stats& s) {
  return {
      {"objects", s.objects},
      {"bytes_used", s.bytesUsed},
      {"capacity", s.capacity},
      {"clients", s.clients},
      {"segments", s.segments},
      {"segment_bytes", s.segmentBytes},
      {"holders", s.holders},
      {"tokens", s.tokens},
      {"pinned_dead", s.pinnedDead},
      {"creating", s.creating},
      {"sealed", s.sealed},
      {"uptime_ms", s.uptimeMs},
      {"puts_total", s.putsTotal},
      {"reclaimed_total", s.reclaimedTotal},
      {"promised", s.promised},
      {"failed", s.failed},
      {"names", s.names},
      {"bytes_in_memory", s.bytesUsed},
      {"spilled", s.spilled},
      {"bytes_spilled", s.spilledBytes},
      {"spill_files", s.spillFiles},
      {"spills_total", s.spillsTotal},
      {"spilled_bytes_total", s.spilledBytesTotal},
      {"restores_total", s.restoresTotal},
      {"restored_bytes_total", s.restoredBytesTotal},
      {"spill_failures_total", s.spillFailuresTotal},
      {"file_backed_bytes", s.fileBackedBytes},
      {"queue_length", s.queueLength},
      {"oldest_waiter_ms", s.oldestWaiterMs},
      {"background_hashes_total", s.backgroundHashesTotal},
      {"last_reclaim_mono_us", s.lastReclaimMonoUs},
      {"proxies", s.proxies},
      {"proxy_bytes", s.proxyBytes},
      {"remote_holders", s.remoteHolders},
      {"detached_holders", s.detachedHolders},
      {"peers", s.peers},
      {"pulls_in_flight", s.pullsInFlight},
      {"bytes_pulled_total", s.bytesPulledTotal},
      {"bytes_served_total", s.bytesServedTotal},
      {"pulls_total", s.pullsTotal},
      {"owner_lost", s.ownerLost},
      {"prefetches_waiting", s.prefetchesWaiting},
      {"bytes_relayed_total", s.bytesRelayedTotal},
  };
}

std::vector<ObjectListing> Client::list() {
  connection->checkUsable();
  // The daemon answers a page at a time (Store.list); this gathers every page.
  std::vector<ObjectListing> out;
  uint64_t cursor = 0;
  do {
    auto request = connection->store.listRequest();
    request.setCursor(cursor);
    auto reply = connection->wait(request.send());
    for (auto row: reply.getObjects()) {
      ObjectListing listing;
      listing.info = toInfo(row.getInfo());
      for (auto holder: row.getHolders()) {
        listing.holders.push_back(HolderInfo{holder.getClientId(), holder.getLabel().cStr(),
                                             holder.getPid(), holder.getHeldMs(),
                                             holder.getPeerOrigin(), holder.getDetached()});
      }
      listing.holderCount = row.getHolderCount();
      listing.tokens = row.getTokens();
      listing.pins = row.getPins();
      listing.ageMs = row.getAgeMs();
      listing.dead = row.getDead();
      for (auto expiry: row.getTokenExpiriesMs()) listing.tokenExpiriesMs.push_back(expiry);
      for (auto name: row.getNames()) listing.names.push_back(name.cStr());
      for (auto id: row.getParents()) listing.parents.push_back(toId(id));
      for (auto id: row.getChildren()) listing.children.push_back(toId(id));
      listing.oldestHoldMs = row.getOldestHoldMs();
      listing.ownerAddress = row.getOwnerAddress();
      listing.bytesLocal = row.getBytesLocal();
      listing.ownerLost = row.getOwnerLost();
      out.push_back(std::move(listing));
    }
    cursor = reply.getNextCursor();
  } while (cursor != 0);
  return out;
}

Ref Client::adopt(const Ref& ref) {
  return connection->wait(async::adopt(*this, async::capability(ref)));
}

Promise Client::promise() {
  connection->checkUsable();
  auto reply = connection->wait(connection->store.promiseRequest().send());
  return Promise{Factory::ref(connection, reply.getRef()),
                 Factory::fulfiller(connection, reply.getFulfiller())};
}

Ref Client::lookup(const std::string& name) {
  connection->checkUsable();
  auto request = connection->store.lookupRequest();
  request.setName(name);
  auto reply = connection->wait(request.send());
  return Factory::ref(connection, reply.getRef());
}

void Client::unname(const std::string& name) {
  connection->checkUsable();
  auto request = connection->store.unnameRequest();
  request.setName(name);
  connection->wait(request.send());
}

std::vector<NameBinding> Client::names() {
  connection->checkUsable();
  // The daemon answers a page at a time (Store.names); this gathers every page.
  std::vector<NameBinding> out;
  bool more = true;
  while (more) {
    auto request = connection->store.namesRequest();
    if (!out.empty()) request.setAfter(out.back().name);
    auto reply = connection->wait(request.send());
    for (auto binding: reply.getNames()) {
      out.push_back(NameBinding{binding.getName().cStr(), toId(binding.getId())});
    }
    more = reply.getMore() && reply.getNames().size() > 0;
  }
  return out;
}

bool Client::sharedMemory() const { return connection->sharedMemory; }
bool Client::writableSharedMemory() const { return connection->writableSharedMemory; }

}  // namespace refstore
