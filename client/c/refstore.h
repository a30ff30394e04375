/* refstore C client: a C ABI over the C++ client, for C programs and FFI.
 *
 * Conventions (after SQLite's C API):
 *   - Opaque handles. Every function that makes a handle (refstore_connect, refstore_put, ...)
 *     is paired with exactly one destroy function; destroy(NULL) is a no-op.
 *   - Every fallible function returns an int result code: REFSTORE_OK (0) or a REFSTORE_E_*
 *     code. On failure, refstore_errmsg(client) describes the most recent failure of any call
 *     made through that client or a handle derived from it.
 *   - Nothing thrown inside crosses this API; out-parameters are untouched on failure.
 *   - A client and all handles derived from it must be used from one thread. Handles may
 *     outlive the client handle that made them (they keep the connection open).
 *
 * Memory is managed by references: a refstore_ref keeps its value alive in the daemon until
 * destroyed (or until the process exits); a refstore_view pins the bytes it points at.
 */
#ifndef REFSTORE_H_
#define REFSTORE_H_

#include <stddef.h>
#include <stdint.h>

#include "schema/refstore_error_codes.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes: REFSTORE_OK (0), or REFSTORE_E_<NAME> for each error code of the schema's
 * ErrorCode enum (schema/refstore.capnp explains each one; schema/refstore_error_codes.h, generated
 * from it, lists them with one-line summaries): REFSTORE_E_INVALID_ARGUMENT, REFSTORE_E_NOT_FOUND,
 * REFSTORE_E_MISUSE (a NULL handle, a handle used from another thread or a forked child), ...
 * The daemon's `refstore.<NAME>` error words map to REFSTORE_E_<NAME>. */
#define REFSTORE_OK 0
enum refstore_result_code {
#define REFSTORE_C_ERROR_CODE(number, NAME, summary) REFSTORE_E_##NAME = number,
  REFSTORE_ERROR_CODES(REFSTORE_C_ERROR_CODE)
#undef REFSTORE_C_ERROR_CODE
};

typedef struct refstore_client refstore_client;
typedef struct refstore_ref refstore_ref;
typedef struct refstore_view refstore_view;
typedef struct refstore_buffer refstore_buffer;

typedef struct refstore_object_info {
  uint64_t id_origin, id_serial; /* display only: there is no get-by-id */
  uint64_t size;
  uint64_t hash_high, hash_low; /* XXH3-128 of the bytes */
  char state[16];               /* "sealed", "creating", ... */
} refstore_object_info;

typedef struct refstore_stats {
  uint64_t objects, bytes_used, capacity, clients, segments, segment_bytes, holders, tokens;
} refstore_stats;

/* "0.1.0"; the library version, usable before connecting. */
const char* refstore_version(void);

/* Name of a result code ("NOT_FOUND"), or "UNKNOWN". */
const char* refstore_errstr(int code);

/* Connects to refstored. `address`: NULL or "" for the default socket, "/path", "unix:/path" or
 * "tcp:host:port". `client_name` labels the connection in `refctl ls` (NULL: program name).
 * On failure *out is set to NULL and, since there is no client to ask, the message is written
 * to `errbuf` (if not NULL, truncated to `errbuf_size`). */
int refstore_connect(const char* address, const char* client_name, refstore_client** out,
                     char* errbuf, size_t errbuf_size);
void refstore_client_destroy(refstore_client* client);

/* English description of the most recent failure on this client (never NULL). */
const char* refstore_errmsg(const refstore_client* client);
/* Result code of the most recent failure on this client (REFSTORE_OK if none yet). */
int refstore_errcode(const refstore_client* client);

/* Stores a copy of `size` bytes (1 byte .. 16 MiB). */
int refstore_put(refstore_client* client, const void* data, size_t size, refstore_ref** out);
/* refstore_put for `count` values in one round trip: refs_out[i] gets a reference to a copy of
 * the sizes[i] bytes at values[i]. All or nothing: on failure no value is stored and refs_out
 * is untouched. At most 65,536 values, 16 MiB in all (REFSTORE_E_TOO_LARGE); an empty value is
 * REFSTORE_E_INVALID_ARGUMENT. */
int refstore_put_many(refstore_client* client, const void* const* values, const size_t* sizes,
                      size_t count, refstore_ref** refs_out);
/* The whole value of each of `count` references in one round trip (copy path; promises are
 * waited for). The values are returned back to back in one buffer, *data_out (free it with
 * refstore_bytes_free; NULL if they are all empty), value i being sizes_out[i] bytes long. At
 * most 65,536 references, 16 MiB in all (REFSTORE_E_TOO_LARGE). The references must come
 * from `client`'s daemon. */
int refstore_read_many(refstore_client* client, refstore_ref* const* refs, size_t count,
                       uint8_t** data_out, size_t* sizes_out);
void refstore_bytes_free(uint8_t* data);
/* Turns a share token into a new reference. */
int refstore_restore(refstore_client* client, const char* token, refstore_ref** out);
/* refstore_restore, then refstore_ref_view, in one round trip instead of two: what a consumer
 * handed a token calls. No reference is kept: the view alone pins the value. Errors are
 * restore's (NOT_FOUND, EXPIRED, MALFORMED, WRONG_STORE), then view's. */
int refstore_restore_view(refstore_client* client, const char* token, refstore_view** out);
int refstore_stats_get(refstore_client* client, refstore_stats* out);

/* Reserves `size` bytes: fill refstore_buffer_data() (or use refstore_buffer_write), then
 * refstore_buffer_seal. Destroying an unsealed buffer aborts it and frees the space. */
int refstore_create(refstore_client* client, uint64_t size, refstore_buffer** out);
/* Writable shared memory of refstore_buffer_size() bytes, or NULL without shared memory. */
uint8_t* refstore_buffer_data(refstore_buffer* buffer);
uint64_t refstore_buffer_size(const refstore_buffer* buffer);
int refstore_buffer_write(refstore_buffer* buffer, uint64_t offset, const void* data,
                          size_t length);
/* Seals the value and returns its first reference. The buffer must still be destroyed. */
int refstore_buffer_seal(refstore_buffer* buffer, refstore_ref** out);
/* refstore_buffer_seal, then refstore_ref_share on the new reference, in one round trip
 * instead of two: what a producer handing the value to another process calls. *token_out gets
 * the token (free it with refstore_string_free); *ref_out the first reference, or pass
 * ref_out = NULL to drop it at once so that only the token keeps the value. On failure nothing
 * is returned and the value is gone (a failed share drops the sealed value). */
int refstore_buffer_seal_and_share(refstore_buffer* buffer, uint32_t ttl_seconds, uint32_t uses,
                                   refstore_ref** ref_out, char** token_out);
void refstore_buffer_destroy(refstore_buffer* buffer);

void refstore_ref_destroy(refstore_ref* ref);
int refstore_ref_info(refstore_ref* ref, refstore_object_info* out);
/* Copies up to `length` bytes from `offset` into `dst`; *read_out gets the count copied. */
int refstore_ref_read(refstore_ref* ref, uint64_t offset, void* dst, size_t length,
                      size_t* read_out);
/* Mints a share token valid for `ttl_seconds` and `uses` restores (0 = unlimited). Free the
 * returned string with refstore_string_free. */
int refstore_ref_share(refstore_ref* ref, uint32_t ttl_seconds, uint32_t uses, char** token_out);
void refstore_string_free(char* string);

/* Zero-copy read-only view; valid until refstore_view_destroy. */
int refstore_ref_view(refstore_ref* ref, refstore_view** out);
const uint8_t* refstore_view_data(const refstore_view* view);
size_t refstore_view_size(const refstore_view* view);
void refstore_view_destroy(refstore_view* view);

#ifdef __cplusplus
}
#endif

#endif /* REFSTORE_H_ */
