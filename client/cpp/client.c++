// The public C++ client API (refstore_client.h) over detail::Connection.
#include <string.h>

#include "client/cpp/connection.h"

namespace refstore {
namespace {

// Copy-path chunk size: well under the protocol's 16 MiB limit, big enough to amortise calls.
constexpr uint64_t CHUNK = 4 << 20;

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

ObjectInfo toInfo(proto::ObjectInfo::Reader info) {
  ObjectInfo out;
  out.id.origin = info.getId().getOrigin();
  out.id.serial = info.getId().getSerial();
  out.size = info.getSize();
  out.hashHigh = info.getHash().getHigh();
  out.hashLow = info.getHash().getLow();
  out.state = stateName(info.getState());
  return out;
}

Ref makeRef(std::shared_ptr<detail::Connection> connection, proto::Ref::Client ref) {
  return detail::Factory::ref(std::move(connection), kj::mv(ref));
}

}  // namespace

namespace detail {
Ref Factory::ref(std::shared_ptr<Connection> connection, proto::Ref::Client ref) {
  auto state = std::make_unique<RefState>();
  state->connection = std::move(connection);
  state->ref = kj::mv(ref);
  return Ref(std::move(state));
}
}  // namespace detail

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case ErrorCode::TOO_LARGE: return "TOO_LARGE";
    case ErrorCode::OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case ErrorCode::NOT_FOUND: return "NOT_FOUND";
    case ErrorCode::EXPIRED: return "EXPIRED";
    case ErrorCode::MALFORMED: return "MALFORMED";
    case ErrorCode::WRONG_STORE: return "WRONG_STORE";
    case ErrorCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case ErrorCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case ErrorCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case ErrorCode::INTERNAL: return "INTERNAL";
    case ErrorCode::DISCONNECTED: return "DISCONNECTED";
    case ErrorCode::IO: return "IO";
  }
  return "UNKNOWN";
}

std::string ObjectId::hex() const {
  char text[33];
  snprintf(text, sizeof(text), "%016llx%016llx", (unsigned long long)origin,
           (unsigned long long)serial);
  return text;
}

// --- View ------------------------------------------------------------------------------

View::View(std::unique_ptr<detail::ViewState> state): state(std::move(state)) {}
View::View(View&&) noexcept = default;
View& View::operator=(View&&) noexcept = default;
View::~View() = default;
const uint8_t* View::data() const { return state ? state->data : nullptr; }
size_t View::size() const { return state ? state->size : 0; }

// --- Ref -------------------------------------------------------------------------------

Ref::Ref(std::unique_ptr<detail::RefState> state): state(std::move(state)) {}
Ref::Ref(Ref&&) noexcept = default;
Ref& Ref::operator=(Ref&&) noexcept = default;
Ref::~Ref() = default;

ObjectInfo Ref::info() const {
  auto reply = state->connection->wait(state->ref.infoRequest().send());
  return toInfo(reply.getInfo());
}

size_t Ref::size() const { return info().size; }

std::vector<uint8_t> Ref::read(uint64_t offset, uint64_t length) const {
  std::vector<uint8_t> out;
  while (length > 0) {
    auto request = state->ref.readRequest();
    request.setOffset(offset);
    request.setLength(std::min(length, CHUNK));
    auto reply = state->connection->wait(request.send());
    auto data = reply.getData();
    if (data.size() == 0) break;  // end of the value
    out.insert(out.end(), data.begin(), data.end());
    offset += data.size();
    length -= data.size();
  }
  return out;
}

std::vector<uint8_t> Ref::readAll() const {
  if (state->connection->sharedMemory) {
    View pinned = view();
    return std::vector<uint8_t>(pinned.data(), pinned.data() + pinned.size());
  }
  return read(0, info().size);
}

View Ref::view() const {
  auto reply = state->connection->wait(state->ref.viewRequest().send());
  auto viewState = std::make_unique<detail::ViewState>();
  viewState->connection = state->connection;
  viewState->view = reply.getView();
  auto resolved = state->connection->resolve(reply.getPlacement(), /*writable=*/false);
  viewState->mapping = std::move(resolved.mapping);
  viewState->data = resolved.data;
  viewState->size = reply.getPlacement().getLength();
  return detail::Factory::view(std::move(viewState));
}

std::string Ref::share(uint32_t ttlSeconds, uint32_t uses) const {
  auto request = state->ref.shareRequest();
  request.setTtlSeconds(ttlSeconds);
  request.setUses(uses);
  auto reply = state->connection->wait(request.send());
  return reply.getToken().cStr();
}

// --- WriteBuffer -----------------------------------------------------------------------

WriteBuffer::WriteBuffer(std::unique_ptr<detail::BufferState> state): state(std::move(state)) {}
WriteBuffer::WriteBuffer(WriteBuffer&&) noexcept = default;
WriteBuffer& WriteBuffer::operator=(WriteBuffer&&) noexcept = default;
WriteBuffer::~WriteBuffer() = default;

uint8_t* WriteBuffer::data() { return state ? state->data : nullptr; }
size_t WriteBuffer::size() const { return state ? state->size : 0; }

void WriteBuffer::write(uint64_t offset, const void* bytes, size_t length) {
  if (!state) throw Error(ErrorCode::FAILED_PRECONDITION, "buffer already sealed");
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
    uint64_t chunk = std::min<uint64_t>(CHUNK, length - done);
    auto request = state->buffer.writeRequest();
    request.setOffset(offset + done);
    request.setData(kj::arrayPtr(source + done, chunk));
    state->connection->wait(request.send());
    done += chunk;
  }
}

Ref WriteBuffer::seal() {
  if (!state) throw Error(ErrorCode::FAILED_PRECONDITION, "buffer already sealed");
  auto reply = state->connection->wait(state->buffer.sealRequest().send());
  auto connection = state->connection;
  Ref ref = makeRef(connection, reply.getRef());
  state.reset();
  return ref;
}

// --- Client ----------------------------------------------------------------------------

Client::Client(std::shared_ptr<detail::Connection> connection)
    : connection(std::move(connection)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

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

Ref Client::put(const void* data, size_t size) {
  auto request = connection->store.putRequest();
  request.setData(kj::arrayPtr(static_cast<const kj::byte*>(data), size));
  auto reply = connection->wait(request.send());
  return makeRef(connection, reply.getRef());
}

WriteBuffer Client::create(uint64_t size) {
  auto request = connection->store.createRequest();
  request.setSize(size);
  auto reply = connection->wait(request.send());
  auto state = std::make_unique<detail::BufferState>();
  state->connection = connection;
  state->buffer = reply.getBuffer();
  state->size = size;
  state->data = nullptr;
  if (reply.hasPlacement()) {
    auto resolved = connection->resolve(reply.getPlacement(), /*writable=*/true);
    state->mapping = std::move(resolved.mapping);
    state->data = resolved.data;
  }
  return detail::Factory::buffer(std::move(state));
}

Ref Client::putLarge(const void* data, uint64_t size) {
  WriteBuffer buffer = create(size);
  buffer.write(0, data, size);
  return buffer.seal();
}

Ref Client::restore(const std::string& token) {
  auto request = connection->store.restoreRequest();
  request.setToken(token);
  auto reply = connection->wait(request.send());
  return makeRef(connection, reply.getRef());
}

Stats Client::stats() {
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
  return out;
}

std::vector<ObjectListing> Client::list() {
  auto reply = connection->wait(connection->store.listRequest().send());
  std::vector<ObjectListing> out;
  for (auto row: reply.getObjects()) {
    ObjectListing listing;
    listing.info = toInfo(row.getInfo());
    for (auto holder: row.getHolders()) {
      listing.holders.push_back(HolderInfo{holder.getClientId(), holder.getLabel().cStr(),
                                           holder.getPid()});
    }
    listing.tokens = row.getTokens();
    listing.pins = row.getPins();
    listing.ageMs = row.getAgeMs();
    listing.dead = row.getDead();
    out.push_back(std::move(listing));
  }
  return out;
}

bool Client::sharedMemory() const { return connection->sharedMemory; }
bool Client::writableSharedMemory() const { return connection->writableSharedMemory; }

}  // namespace refstore
