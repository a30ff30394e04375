// C ABI over client/cpp. Each C handle boxes a C++ object plus a shared pointer to the
// client's error slot, so errors from any handle land on the client they came from even if the
// client handle itself was destroyed first.
#include "client/c/refstore.h"

#include <stdlib.h>
#include <string.h>

#include <memory>
#include <string>

#include "client/cpp/refstore_client.h"

namespace {

struct ErrorSlot {
  int code = REFSTORE_OK;
  std::string message = "no error";
};

int fail(ErrorSlot& slot, int code, std::string message) {
  slot.code = code;
  slot.message = std::move(message);
  return code;
}

// Runs `body`, converting every exception into a result code recorded in `slot`.
template <typename Body>
int guarded(ErrorSlot& slot, Body&& body) {
  try {
    body();
    return REFSTORE_OK;
  } catch (const refstore::Error& e) {
    return fail(slot, static_cast<int>(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(slot, REFSTORE_E_IO, "out of client memory");
  } catch (const std::exception& e) {
    return fail(slot, REFSTORE_E_INTERNAL, e.what());
  } catch (...) {
    return fail(slot, REFSTORE_E_INTERNAL, "unknown exception");
  }
}

// A malloc'd copy of `text`, for strings the caller frees with refstore_string_free.
char* copyString(const std::string& text) {
  char* copy = static_cast<char*>(malloc(text.size() + 1));
  if (copy == nullptr) throw std::bad_alloc();
  memcpy(copy, text.c_str(), text.size() + 1);
  return copy;
}

}  // namespace

struct refstore_client {
  std::shared_ptr<ErrorSlot> errors = std::make_shared<ErrorSlot>();
  std::unique_ptr<refstore::Client> client;
};
struct refstore_ref {
  std::shared_ptr<ErrorSlot> errors;
  refstore::Ref ref;
};
struct refstore_view {
  std::shared_ptr<ErrorSlot> errors;
  refstore::View view;
};
struct refstore_buffer {
  std::shared_ptr<ErrorSlot> errors;
  std::unique_ptr<refstore::WriteBuffer> buffer;  // null once sealed
  uint64_t size;
};

// Both enums come from the same generated list; this only guards against someone editing one.
#define REFSTORE_CHECK_ALIGNED(number, NAME, summary)                                  \
  static_assert(REFSTORE_E_##NAME == static_cast<int>(refstore::ErrorCode::NAME), \
                "C and C++ error codes must stay aligned");
REFSTORE_ERROR_CODES(REFSTORE_CHECK_ALIGNED)
#undef REFSTORE_CHECK_ALIGNED

extern "C" {

const char* refstore_version(void) { return "0.1.0"; }

const char* refstore_errstr(int code) {
  if (code == REFSTORE_OK) return "OK";
  if (code >= 1 && code <= REFSTORE_LAST_ERROR_CODE) {
    return refstore::errorCodeName(static_cast<refstore::ErrorCode>(code));
  }
  return "UNKNOWN";
}

int refstore_connect(const char* address, const char* client_name, refstore_client** out,
                     char* errbuf, size_t errbuf_size) {
  if (out == nullptr) return REFSTORE_E_MISUSE;
  *out = nullptr;
  auto handle = std::make_unique<refstore_client>();
  int rc = guarded(*handle->errors, [&]() {
    refstore::ConnectOptions options;
    options.address = address ? address : "";
    options.clientName = client_name ? client_name : "";
    handle->client = std::make_unique<refstore::Client>(refstore::Client::connect(options));
  });
  if (rc != REFSTORE_OK) {
    if (errbuf != nullptr && errbuf_size > 0) {
      snprintf(errbuf, errbuf_size, "%s", handle->errors->message.c_str());
    }
    return rc;
  }
  *out = handle.release();
  return REFSTORE_OK;
}

void refstore_client_destroy(refstore_client* client) { delete client; }

const char* refstore_errmsg(const refstore_client* client) {
  if (client == nullptr) return "NULL client handle";
  return client->errors->message.c_str();
}

int refstore_errcode(const refstore_client* client) {
  return client == nullptr ? REFSTORE_E_MISUSE : client->errors->code;
}

int refstore_put(refstore_client* client, const void* data, size_t size, refstore_ref** out) {
  if (client == nullptr || out == nullptr || (data == nullptr && size > 0)) {
    return REFSTORE_E_MISUSE;
  }
  return guarded(*client->errors, [&]() {
    *out = new refstore_ref{client->errors, client->client->put(data, size)};
  });
}

int refstore_put_many(refstore_client* client, const void* const* values, const size_t* sizes,
                      size_t count, refstore_ref** refs_out) {
  if (client == nullptr || (count > 0 && (values == nullptr || sizes == nullptr ||
                                          refs_out == nullptr))) {
    return REFSTORE_E_MISUSE;
  }
  for (size_t i = 0; i < count; i++) {
    if (values[i] == nullptr && sizes[i] > 0) return REFSTORE_E_MISUSE;
  }
  return guarded(*client->errors, [&]() {
    std::vector<refstore::Bytes> batch;
    batch.reserve(count);
    for (size_t i = 0; i < count; i++) batch.push_back(refstore::Bytes{values[i], sizes[i]});
    std::vector<refstore::Ref> refs = client->client->putMany(batch);
    // Allocate every handle before handing any out, so a failure leaves refs_out untouched.
    std::vector<std::unique_ptr<refstore_ref>> handles;
    handles.reserve(refs.size());
    for (auto& ref: refs) handles.push_back(std::unique_ptr<refstore_ref>(
        new refstore_ref{client->errors, std::move(ref)}));
    for (size_t i = 0; i < handles.size(); i++) refs_out[i] = handles[i].release();
  });
}

int refstore_read_many(refstore_client* client, refstore_ref* const* refs, size_t count,
                       uint8_t** data_out, size_t* sizes_out) {
  if (client == nullptr || data_out == nullptr ||
      (count > 0 && (refs == nullptr || sizes_out == nullptr))) {
    return REFSTORE_E_MISUSE;
  }
  for (size_t i = 0; i < count; i++) {
    if (refs[i] == nullptr) return REFSTORE_E_MISUSE;
  }
  return guarded(*client->errors, [&]() {
    std::vector<const refstore::Ref*> batch;
    batch.reserve(count);
    for (size_t i = 0; i < count; i++) batch.push_back(&refs[i]->ref);
    std::vector<std::vector<uint8_t>> values = client->client->readMany(batch);
    size_t total = 0;
    for (auto& v: values) total += v.size();
    uint8_t* data = nullptr;
    if (total > 0) {
      data = static_cast<uint8_t*>(malloc(total));
      if (data == nullptr) throw std::bad_alloc();
    }
    size_t at = 0;
    for (size_t i = 0; i < values.size(); i++) {
      if (!values[i].empty()) memcpy(data + at, values[i].data(), values[i].size());
      at += values[i].size();
      sizes_out[i] = values[i].size();
    }
    *data_out = data;
  });
}

void refstore_bytes_free(uint8_t* data) { free(data); }

int refstore_restore(refstore_client* client, const char* token, refstore_ref** out) {
  if (client == nullptr || token == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*client->errors, [&]() {
    *out = new refstore_ref{client->errors, client->client->restore(token)};
  });
}

int refstore_restore_view(refstore_client* client, const char* token, refstore_view** out) {
  if (client == nullptr || token == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*client->errors, [&]() {
    *out = new refstore_view{client->errors, client->client->restoreView(token)};
  });
}

int refstore_stats_get(refstore_client* client, refstore_stats* out) {
  if (client == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*client->errors, [&]() {
    refstore::Stats s = client->client->stats();
    *out = refstore_stats{s.objects, s.bytesUsed, s.capacity, s.clients,
                          s.segments, s.segmentBytes, s.holders, s.tokens};
  });
}

int refstore_create(refstore_client* client, uint64_t size, refstore_buffer** out) {
  if (client == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*client->errors, [&]() {
    auto buffer = std::make_unique<refstore::WriteBuffer>(client->client->create(size));
    *out = new refstore_buffer{client->errors, std::move(buffer), size};
  });
}

uint8_t* refstore_buffer_data(refstore_buffer* buffer) {
  return buffer && buffer->buffer ? buffer->buffer->data() : nullptr;
}

uint64_t refstore_buffer_size(const refstore_buffer* buffer) { return buffer ? buffer->size : 0; }

int refstore_buffer_write(refstore_buffer* buffer, uint64_t offset, const void* data,
                          size_t length) {
  if (buffer == nullptr || (data == nullptr && length > 0)) return REFSTORE_E_MISUSE;
  if (!buffer->buffer) {
    return fail(*buffer->errors, REFSTORE_E_FAILED_PRECONDITION, "buffer already sealed");
  }
  return guarded(*buffer->errors, [&]() { buffer->buffer->write(offset, data, length); });
}

int refstore_buffer_seal(refstore_buffer* buffer, refstore_ref** out) {
  if (buffer == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  if (!buffer->buffer) {
    return fail(*buffer->errors, REFSTORE_E_FAILED_PRECONDITION, "buffer already sealed");
  }
  return guarded(*buffer->errors, [&]() {
    *out = new refstore_ref{buffer->errors, buffer->buffer->seal()};
    buffer->buffer.reset();
  });
}

int refstore_buffer_seal_and_share(refstore_buffer* buffer, uint32_t ttl_seconds, uint32_t uses,
                                   refstore_ref** ref_out, char** token_out) {
  if (buffer == nullptr || token_out == nullptr) return REFSTORE_E_MISUSE;
  if (!buffer->buffer) {
    return fail(*buffer->errors, REFSTORE_E_FAILED_PRECONDITION, "buffer already sealed");
  }
  return guarded(*buffer->errors, [&]() {
    // The buffer is spent whatever happens: a failed seal aborts it, a failed share drops it.
    auto buffered = std::move(buffer->buffer);
    refstore::SharedValue shared = buffered->sealAndShare(ttl_seconds, uses);
    char* token = copyString(shared.token);
    if (ref_out != nullptr) *ref_out = new refstore_ref{buffer->errors, std::move(shared.ref)};
    *token_out = token;
  });
}

void refstore_buffer_destroy(refstore_buffer* buffer) { delete buffer; }

void refstore_ref_destroy(refstore_ref* ref) { delete ref; }

int refstore_ref_info(refstore_ref* ref, refstore_object_info* out) {
  if (ref == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*ref->errors, [&]() {
    refstore::ObjectInfo info = ref->ref.info();
    refstore_object_info result;
    memset(&result, 0, sizeof(result));
    result.id_origin = info.id.origin;
    result.id_serial = info.id.serial;
    result.size = info.size;
    result.hash_high = info.hashHigh;
    result.hash_low = info.hashLow;
    snprintf(result.state, sizeof(result.state), "%s", info.state.c_str());
    *out = result;
  });
}

int refstore_ref_read(refstore_ref* ref, uint64_t offset, void* dst, size_t length,
                      size_t* read_out) {
  if (ref == nullptr || (dst == nullptr && length > 0) || read_out == nullptr) {
    return REFSTORE_E_MISUSE;
  }
  return guarded(*ref->errors, [&]() {
    std::vector<uint8_t> bytes = ref->ref.read(offset, length);
    if (!bytes.empty()) memcpy(dst, bytes.data(), bytes.size());
    *read_out = bytes.size();
  });
}

int refstore_ref_share(refstore_ref* ref, uint32_t ttl_seconds, uint32_t uses, char** token_out) {
  if (ref == nullptr || token_out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*ref->errors, [&]() {
    *token_out = copyString(ref->ref.share(ttl_seconds, uses));
  });
}

void refstore_string_free(char* string) { free(string); }

int refstore_ref_view(refstore_ref* ref, refstore_view** out) {
  if (ref == nullptr || out == nullptr) return REFSTORE_E_MISUSE;
  return guarded(*ref->errors, [&]() { *out = new refstore_view{ref->errors, ref->ref.view()}; });
}

const uint8_t* refstore_view_data(const refstore_view* view) {
  return view ? view->view.data() : nullptr;
}

size_t refstore_view_size(const refstore_view* view) { return view ? view->view.size() : 0; }

void refstore_view_destroy(refstore_view* view) { delete view; }

}  // extern "C"
