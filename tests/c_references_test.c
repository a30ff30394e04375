/* The C API's references beyond put/get: nested refs, names, promises, adopt; every counter as
 * JSON; the memory wait timeout; and misuse reported through refstore_errmsg/errcode. */
#include <stdlib.h>
#include <string.h>

#include "tests/c_testing.h"

static uint64_t objects(refstore_client* client) {
  refstore_stats stats;
  CHECK(refstore_stats_get(client, &stats) == REFSTORE_OK);
  return stats.objects;
}

/* The whole value of `ref` as a NUL-terminated string in `out`. */
static const char* text(refstore_ref* ref, char* out, size_t size) {
  size_t n = 0;
  memset(out, 0, size);
  CHECK(refstore_ref_read(ref, 0, out, size - 1, &n) == REFSTORE_OK);
  return out;
}

static void misuse_is_reported(refstore_client* client) {
  CHECK(refstore_errcode(client) == REFSTORE_OK);
  CHECK(refstore_put(client, "x", 1, NULL) == REFSTORE_E_MISUSE);
  CHECK(refstore_errcode(client) == REFSTORE_E_MISUSE);
  CHECK(strstr(refstore_errmsg(client), "refstore.MISUSE: refstore_put: out is NULL") != NULL);
  refstore_ref* ref = NULL;
  CHECK(refstore_put(client, "x", 1, &ref) == REFSTORE_OK);
  CHECK(refstore_ref_share(ref, 60, 0, NULL) == REFSTORE_E_MISUSE); /* through a handle */
  CHECK(strstr(refstore_errmsg(client), "refstore_ref_share: token_out is NULL") != NULL);
  refstore_ref* none[1] = {NULL};
  refstore_ref* parent = NULL;
  CHECK(refstore_put_nested(client, "p", 1, none, 1, &parent) == REFSTORE_E_MISUSE);
  CHECK(parent == NULL);
  CHECK(strstr(refstore_errmsg(client), "a child is NULL") != NULL);
  CHECK(strcmp(refstore_errstr(REFSTORE_E_MISUSE), "MISUSE") == 0);
  CHECK(refstore_shared_memory(client) == 1); /* a Unix socket, same uid */
  CHECK(refstore_shared_memory(NULL) == 0);
  CHECK(strcmp(refstore_errstr(999), "UNKNOWN") == 0);
  refstore_ref_destroy(ref);
}

static void nested_references(refstore_client* client) {
  uint64_t before = objects(client);
  refstore_ref* parts[2] = {NULL, NULL};
  CHECK(refstore_put(client, "part-0", 6, &parts[0]) == REFSTORE_OK);
  CHECK(refstore_put(client, "part-1", 6, &parts[1]) == REFSTORE_OK);
  refstore_ref* dataset = NULL;
  CHECK(refstore_put_nested(client, "index", 5, parts, 2, &dataset) == REFSTORE_OK);
  refstore_ref_destroy(parts[0]);
  refstore_ref_destroy(parts[1]);
  CHECK(objects(client) == before + 3); /* the parent keeps its parts */

  refstore_ref** children = NULL;
  size_t count = 0;
  CHECK(refstore_ref_children(dataset, &children, &count) == REFSTORE_OK);
  CHECK(count == 2);
  char value[16];
  if (count == 2) {
    CHECK(strcmp(text(children[0], value, sizeof(value)), "part-0") == 0);
    CHECK(strcmp(text(children[1], value, sizeof(value)), "part-1") == 0);
    refstore_ref_destroy(children[0]);
    refstore_ref_destroy(children[1]);
  }
  refstore_ref_array_free(children);

  CHECK(refstore_ref_children(dataset, NULL, &count) == REFSTORE_E_MISUSE);

  /* A sealed buffer can have children too; a leaf has none. */
  refstore_buffer* buffer = NULL;
  CHECK(refstore_create(client, 4, &buffer) == REFSTORE_OK);
  memcpy(refstore_buffer_data(buffer), "wrap", 4);
  refstore_ref* wrapper = NULL;
  CHECK(refstore_buffer_seal_nested(buffer, &dataset, 1, &wrapper) == REFSTORE_OK);
  refstore_buffer_destroy(buffer);
  refstore_ref_destroy(dataset);
  CHECK(objects(client) == before + 4);
  CHECK(refstore_ref_children(wrapper, &children, &count) == REFSTORE_OK);
  CHECK(count == 1);
  if (count == 1) {
    CHECK(strcmp(text(children[0], value, sizeof(value)), "index") == 0);
    refstore_ref_destroy(children[0]);
  }
  refstore_ref_array_free(children);
  refstore_ref** none = (refstore_ref**)1;
  CHECK(refstore_put(client, "leaf", 4, &dataset) == REFSTORE_OK);
  CHECK(refstore_ref_children(dataset, &none, &count) == REFSTORE_OK);
  CHECK(none == NULL && count == 0);
  refstore_ref_destroy(dataset);

  refstore_ref_destroy(wrapper); /* the last reference to all four */
  CHECK(objects(client) == before);
}

static void names(refstore_client* client) {
  refstore_ref* model = NULL;
  CHECK(refstore_put(client, "weights", 7, &model) == REFSTORE_OK);
  CHECK(refstore_ref_save_as(model, "models/c-test") == REFSTORE_OK);
  refstore_ref* other = NULL;
  CHECK(refstore_put(client, "other", 5, &other) == REFSTORE_OK);
  CHECK(refstore_ref_save_as(other, "models/c-test") == REFSTORE_E_ALREADY_EXISTS);
  CHECK(strstr(refstore_errmsg(client), "refstore.ALREADY_EXISTS") != NULL);
  refstore_ref_destroy(other);
  refstore_ref_destroy(model);

  refstore_ref* found = NULL;
  CHECK(refstore_lookup(client, "models/c-test", &found) == REFSTORE_OK);
  char value[16];
  CHECK(found != NULL && strcmp(text(found, value, sizeof(value)), "weights") == 0);
  refstore_ref_destroy(found);
  uint64_t named = objects(client);
  CHECK(refstore_unname(client, "models/c-test") == REFSTORE_OK);
  CHECK(objects(client) == named - 1); /* the name was its last reference */
  found = NULL;
  CHECK(refstore_lookup(client, "models/c-test", &found) == REFSTORE_E_NOT_FOUND);
  CHECK(found == NULL);
  CHECK(refstore_unname(client, "models/c-test") == REFSTORE_E_NOT_FOUND);
  CHECK(refstore_lookup(client, NULL, &found) == REFSTORE_E_MISUSE);
}

static void promises(refstore_client* client) {
  refstore_object_info info;
  char value[16];

  /* Fulfilled with bytes: a reader that waits too little times out, then sees the value. */
  refstore_ref* later = NULL;
  refstore_fulfiller* fulfiller = NULL;
  CHECK(refstore_promise(client, &later, &fulfiller) == REFSTORE_OK);
  CHECK(refstore_ref_when_ready(later, 0.05, &info) == REFSTORE_E_TIMEOUT);
  CHECK(refstore_ref_info(later, &info) == REFSTORE_OK);
  CHECK(strcmp(info.state, "promised") == 0);
  char* token = NULL;
  CHECK(refstore_ref_share(later, 60, 1, &token) == REFSTORE_OK); /* shareable before it exists */
  CHECK(refstore_fulfill(fulfiller, "later", 5, NULL, 0) == REFSTORE_OK);
  CHECK(refstore_fulfill(fulfiller, "again", 5, NULL, 0) == REFSTORE_E_FAILED_PRECONDITION);
  refstore_fulfiller_destroy(fulfiller);
  CHECK(refstore_ref_when_ready(later, -1, &info) == REFSTORE_OK);
  CHECK(info.size == 5 && strcmp(info.state, "sealed") == 0);
  refstore_ref* restored = NULL;
  CHECK(refstore_restore(client, token, &restored) == REFSTORE_OK);
  CHECK(strcmp(text(restored, value, sizeof(value)), "later") == 0);
  refstore_ref_destroy(restored);
  refstore_string_free(token);

  /* Fulfilled with another value (no copy), with nested references, or with itself (a cycle). */
  refstore_ref* aliased = NULL;
  CHECK(refstore_promise(client, &aliased, &fulfiller) == REFSTORE_OK);
  CHECK(refstore_fulfill_with(fulfiller, aliased) == REFSTORE_E_CYCLE);
  CHECK(refstore_fulfill_with(fulfiller, later) == REFSTORE_OK);
  refstore_fulfiller_destroy(fulfiller);
  CHECK(strcmp(text(aliased, value, sizeof(value)), "later") == 0);
  refstore_ref* parent = NULL;
  CHECK(refstore_promise(client, &parent, &fulfiller) == REFSTORE_OK);
  CHECK(refstore_fulfill(fulfiller, "parent", 6, &aliased, 1) == REFSTORE_OK);
  refstore_fulfiller_destroy(fulfiller);
  refstore_ref** children = NULL;
  size_t count = 0;
  CHECK(refstore_ref_children(parent, &children, &count) == REFSTORE_OK);
  CHECK(count == 1);
  if (count == 1) {
    CHECK(strcmp(text(children[0], value, sizeof(value)), "later") == 0);
    refstore_ref_destroy(children[0]);
  }
  refstore_ref_array_free(children);
  refstore_ref_destroy(parent);
  refstore_ref_destroy(aliased);
  refstore_ref_destroy(later);

  /* Rejected: readers get the reason. */
  refstore_ref* doomed = NULL;
  CHECK(refstore_promise(client, &doomed, &fulfiller) == REFSTORE_OK);
  CHECK(refstore_reject(fulfiller, "no luck today") == REFSTORE_OK);
  refstore_fulfiller_destroy(fulfiller);
  CHECK(refstore_ref_when_ready(doomed, 5, &info) == REFSTORE_E_REJECTED);
  CHECK(strstr(refstore_errmsg(client), "no luck today") != NULL);
  size_t n = 0;
  CHECK(refstore_ref_read(doomed, 0, value, 1, &n) == REFSTORE_E_REJECTED);
  refstore_ref_destroy(doomed);

  /* Abandoned: destroying the fulfiller breaks the promise. */
  refstore_ref* broken = NULL;
  CHECK(refstore_promise(client, &broken, &fulfiller) == REFSTORE_OK);
  refstore_fulfiller_destroy(fulfiller);
  CHECK(refstore_ref_when_ready(broken, 5, &info) == REFSTORE_E_BROKEN_PROMISE);
  refstore_ref_destroy(broken);
  refstore_fulfiller_destroy(NULL);
  CHECK(refstore_reject(NULL, "x") == REFSTORE_E_MISUSE);
}

static void adoption(const char* socket_path, refstore_client* client) {
  refstore_client* sender = connect_with_retry(socket_path, "c-sender");
  refstore_ref* sent = NULL;
  CHECK(refstore_put(sender, "adopt me", 8, &sent) == REFSTORE_OK);
  refstore_ref* adopted = NULL;
  CHECK(refstore_adopt(client, sent, &adopted) == REFSTORE_OK);
  refstore_ref_destroy(sent);
  refstore_client_destroy(sender); /* the sender's connection closes: nothing of it is left */
  char value[16];
  CHECK(adopted != NULL && strcmp(text(adopted, value, sizeof(value)), "adopt me") == 0);
  refstore_view* view = NULL;
  CHECK(refstore_ref_view(adopted, &view) == REFSTORE_OK); /* direct: zero-copy works */
  CHECK(view != NULL && memcmp(refstore_view_data(view), "adopt me", 8) == 0);
  refstore_view_destroy(view);
  refstore_ref_destroy(adopted);
}

static void stats_as_json(refstore_client* client) {
  refstore_stats stats;
  CHECK(refstore_stats_get(client, &stats) == REFSTORE_OK);
  char* json = NULL;
  CHECK(refstore_stats_json(client, &json) == REFSTORE_OK);
  char expected[64];
  snprintf(expected, sizeof(expected), "{\"objects\": %llu, ", (unsigned long long)stats.objects);
  CHECK(json != NULL && strncmp(json, expected, strlen(expected)) == 0);
  CHECK(json != NULL && strstr(json, "\"last_reclaim_mono_us\": ") != NULL);
  CHECK(json != NULL && json[strlen(json) - 1] == '}');
  refstore_string_free(json);
  CHECK(refstore_stats_json(client, NULL) == REFSTORE_E_MISUSE);
}

static void memory_timeout(refstore_client* client) {
  /* 64 MiB without spilling: a second 40 MiB value waits for memory, then fails. */
  refstore_buffer* first = NULL;
  CHECK(refstore_create(client, 40 << 20, &first) == REFSTORE_OK);
  CHECK(refstore_memory_timeout(client, 100) == REFSTORE_OK);
  refstore_buffer* second = NULL;
  CHECK(refstore_create(client, 40 << 20, &second) == REFSTORE_E_OUT_OF_MEMORY);
  CHECK(second == NULL);
  refstore_ref* small = NULL;
  CHECK(refstore_put(client, "fits", 4, &small) == REFSTORE_OK);
  refstore_ref_destroy(small);
  refstore_buffer_destroy(first);
  CHECK(refstore_create(client, 40 << 20, &second) == REFSTORE_OK);
  refstore_buffer_destroy(second);
  CHECK(refstore_memory_timeout(client, 0) == REFSTORE_OK);
  CHECK(refstore_memory_timeout(NULL, 0) == REFSTORE_E_MISUSE);
}

int main(void) {
  test_daemon daemon = start_daemon("rst-cr");
  refstore_client* client = connect_with_retry(daemon.socket_path, "c-references");
  misuse_is_reported(client);
  nested_references(client);
  names(client);
  promises(client);
  adoption(daemon.socket_path, client);
  stats_as_json(client);
  memory_timeout(client);
  CHECK(objects(client) == 0);
  refstore_client_destroy(client);
  stop_daemon(&daemon);
  return finish_checks();
}
