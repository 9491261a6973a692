// fakeenvoy is a stand-in for Envoy's golang HTTP filter host, for testing
// the plugin's .so through its C ABI without an Envoy binary. Like Envoy it
// dlopen()s the library with RTLD_LAZY, looks up the exported entry points,
// creates filter and route configs from serialized plugin_config bytes and
// drives the decode-headers phase; and it implements the envoyGo* functions
// the library calls back (logging, headers, stream info, secrets, local
// replies, metrics, finalizers) with Envoy's rules: request-scoped calls are
// refused unless Go is processing that request, and metrics are refused once
// the config that defined them is destroyed.
//
// It reads commands on stdin, one per line, and answers on stdout; the Go
// log goes to stderr. Commands:
//
//   config filter|route FILE      -> CONFIG ID        (ID 0: Parse failed)
//   merge PARENT CHILD            -> MERGED ID
//   secret NAME VALUE             -> OK
//   metadata NAMESPACE FILE|-     -> OK   (the dynamic metadata of later requests: a
//                                         serialized google.protobuf.Struct; "-": none)
//   request CONFIG CLUSTER WORKER [NAME=VALUE]...     (CLUSTER "-": none)
//        -> STATUS N, [REPLY CODE DETAILS BODY], [REPLYHEADER K V]...,
//           [MUTATION set|add|remove K]..., HEADER K V..., END STREAM
//        The stream stays open (as the upgrade Envoy proxies does) until
//   end STREAM                    -> ENDED STREAM   (Envoy's onDestroy)
//   bench CONFIG CLUSTER REQUESTS CHUNKS [NAME=VALUE]...
//        -> BENCH REQUEST_NS CHUNK_NS
//        Runs REQUESTS whole streams on worker 0 the way Envoy calls the
//        filter for each: decode headers, encode headers, CHUNKS data
//        chunks in each direction, the access log, destroy. REQUEST_NS is
//        the time of the header, log and destroy calls of all streams,
//        CHUNK_NS that of the 2 x CHUNKS x REQUESTS data calls.
//   stats                         -> METRIC NAME VALUE..., END
//   destroy ID                    -> DESTROYED ID
//   (end of input)                -> open streams end; then
//                                    FINALIZED REQUESTS CREATED CONFIGS CREATED, VIOLATIONS N; exit
//
// Build: gcc -rdynamic -I<envoy api dir> -o fakeenvoy fakeenvoy.c -ldl -lpthread

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"

// Go's string header, as the library passes header arrays.
typedef struct {
  const char* p;
  ptrdiff_t n;
} GoStr;

enum { MaxHeaders = 64, MaxMetrics = 256, MaxConfigs = 256, MaxSecrets = 16, MaxWorkers = 2, MaxStreams = 1024 };
enum { ValueUpstreamClusterName = 11 };
enum { ProcessingHeader = 1, ProcessingData = 4 };
enum { AccessLogDownstreamEnd = 6 };

// --- the library's entry points, resolved as Envoy's DsoManager does ---

static uint64_t (*newHttpPluginConfig)(httpConfig*);
static void (*destroyHttpPluginConfig)(uint64_t, int);
static uint64_t (*mergeHttpPluginConfig)(uint64_t, uint64_t, uint64_t, uint64_t);
static uint64_t (*onHttpHeader)(processState*, uint64_t, uint64_t, uint64_t);
static uint64_t (*onHttpData)(processState*, uint64_t, uint64_t, uint64_t);
static void (*onHttpLog)(httpRequest*, uint64_t, processState*, processState*, uint64_t, uint64_t, uint64_t,
                         uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
static void (*onHttpDestroy)(httpRequest*, uint64_t);
static void (*cleanUp)(void);

static void* must_sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (p == NULL) {
    fprintf(stderr, "fakeenvoy: symbol %s missing: %s\n", name, dlerror());
    exit(2);
  }
  return p;
}

static void load(const char* path) {
  void* lib = dlopen(path, RTLD_LAZY);
  if (lib == NULL) {
    fprintf(stderr, "fakeenvoy: dlopen %s: %s\n", path, dlerror());
    exit(2);
  }
  newHttpPluginConfig = must_sym(lib, "envoyGoFilterNewHttpPluginConfig");
  destroyHttpPluginConfig = must_sym(lib, "envoyGoFilterDestroyHttpPluginConfig");
  mergeHttpPluginConfig = must_sym(lib, "envoyGoFilterMergeHttpPluginConfig");
  onHttpHeader = must_sym(lib, "envoyGoFilterOnHttpHeader");
  onHttpDestroy = must_sym(lib, "envoyGoFilterOnHttpDestroy");
  onHttpData = must_sym(lib, "envoyGoFilterOnHttpData");
  onHttpLog = must_sym(lib, "envoyGoFilterOnHttpLog");
  cleanUp = must_sym(lib, "envoyGoFilterCleanUp");
  // Envoy requires these too, though this host never calls them.
  must_sym(lib, "envoyGoFilterOnHttpStreamComplete");
  must_sym(lib, "envoyGoRequestSemaDec");
}

// --- state shared with the library's threads ---

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int violations;
static int requests_created, requests_finalized;
static int configs_created, configs_finalized;

static void violation(const char* what) {
  fprintf(stderr, "fakeenvoy: VIOLATION %s\n", what);
  violations++;
}

typedef struct {
  char* key;
  char* value;
} header;

typedef struct {
  httpConfig base; // must be first: the library holds a pointer to it
  uint64_t id;
  int destroyed;
  char* bytes;
} fake_config;

static fake_config* configs[MaxConfigs];
static int nconfigs;
static const char plugin_name[] = "pubsub";

typedef struct {
  httpRequest base; // must be first
  processState decoding;
  processState encoding;
  int in_go;
  const char* cluster;
  header headers[MaxHeaders];
  int nheaders;
  char mutations[MaxHeaders * 2][160];
  int nmutations;
  int reply_code;
  char* reply_body;
  char* reply_details;
  header reply_headers[MaxHeaders];
  int nreply_headers;
} fake_request;

typedef struct {
  char* name;
  uint32_t type;
  int64_t value;
} metric;

static metric metrics[MaxMetrics];
static int nmetrics;

static header secrets[MaxSecrets];
static int nsecrets;

// The dynamic metadata of the requests: one namespace's Struct, serialized
// as Envoy's getDynamicMetadata hands it to Go.
static char* metadata_namespace;
static char* metadata_bytes;
static size_t metadata_len;

static char* dupn(const void* p, size_t n) {
  char* s = malloc(n + 1);
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

static fake_request* request_of_state(void* s) { return (fake_request*)((processState*)s)->req; }

// in_go_request checks Envoy's rule for request-scoped calls.
static int in_go_request(fake_request* r, const char* call) {
  if (!r->in_go) {
    violation(call);
    return 0;
  }
  return 1;
}

// --- envoyGo* functions the library imports ---

uint32_t envoyGoFilterLogLevel() { return 1; /* debug */ }

void envoyGoFilterLog(uint32_t level, void* data, int len) {
  char* line = malloc(len + 32);
  int n = snprintf(line, 32, "[golang][%u] ", level);
  for (int i = 0; i < len; i++) {
    char c = ((char*)data)[i];
    line[n++] = c == '\n' ? ' ' : c;
  }
  line[n++] = '\n';
  pthread_mutex_lock(&mu);
  fwrite(line, 1, n, stderr);
  pthread_mutex_unlock(&mu);
  free(line);
}

CAPIStatus envoyGoFilterHttpContinue(void* s, int status) {
  (void)status;
  pthread_mutex_lock(&mu);
  violation("Continue: DecodeHeaders must decide synchronously here");
  pthread_mutex_unlock(&mu);
  (void)s;
  return CAPINotInGo;
}

CAPIStatus envoyGoFilterHttpSendLocalReply(void* s, int code, void* body, int body_len, void* headers,
                                           int headers_num, long long grpc_status, void* details,
                                           int details_len) {
  (void)grpc_status;
  fake_request* r = request_of_state(s);
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "SendLocalReply outside Go processing")) {
    st = CAPINotInGo;
  } else if (r->reply_code != 0) {
    violation("second SendLocalReply");
  } else {
    r->reply_code = code;
    r->reply_body = dupn(body, body_len);
    r->reply_details = dupn(details, details_len);
    GoStr* h = headers;
    for (int i = 0; i + 1 < headers_num && r->nreply_headers < MaxHeaders; i += 2) {
      r->reply_headers[r->nreply_headers].key = dupn(h[i].p, h[i].n);
      r->reply_headers[r->nreply_headers].value = dupn(h[i + 1].p, h[i + 1].n);
      r->nreply_headers++;
    }
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpSendPanicReply(void* s, void* details, int details_len) {
  fake_request* r = request_of_state(s);
  pthread_mutex_lock(&mu);
  violation("panic reply");
  r->reply_code = 500;
  r->reply_body = dupn("error happened in filter", 24);
  r->reply_details = dupn(details, details_len);
  pthread_mutex_unlock(&mu);
  return CAPIOK;
}

static int find_header(fake_request* r, const char* key, int len) {
  for (int i = 0; i < r->nheaders; i++) {
    if ((int)strlen(r->headers[i].key) == len && strncasecmp(r->headers[i].key, key, len) == 0) {
      return i;
    }
  }
  return -1;
}

CAPIStatus envoyGoFilterHttpGetHeader(void* s, void* key, int key_len, uint64_t* value_data, int* value_len) {
  fake_request* r = request_of_state(s);
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "GetHeader outside Go processing")) {
    st = CAPINotInGo;
  } else {
    int i = find_header(r, key, key_len);
    *value_data = i < 0 ? 0 : (uint64_t)(uintptr_t)r->headers[i].value;
    *value_len = i < 0 ? 0 : (int)strlen(r->headers[i].value);
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpCopyHeaders(void* s, void* strs, void* buf) {
  fake_request* r = request_of_state(s);
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "CopyHeaders outside Go processing")) {
    st = CAPINotInGo;
  } else {
    GoStr* out = strs;
    char* b = buf;
    for (int i = 0; i < r->nheaders; i++) {
      size_t kl = strlen(r->headers[i].key), vl = strlen(r->headers[i].value);
      memcpy(b, r->headers[i].key, kl);
      out[2 * i].p = b;
      out[2 * i].n = kl;
      b += kl;
      memcpy(b, r->headers[i].value, vl);
      out[2 * i + 1].p = b;
      out[2 * i + 1].n = vl;
      b += vl;
    }
  }
  pthread_mutex_unlock(&mu);
  return st;
}

static void remove_header(fake_request* r, const char* key, int len) {
  int i;
  while ((i = find_header(r, key, len)) >= 0) {
    free(r->headers[i].key);
    free(r->headers[i].value);
    r->headers[i] = r->headers[--r->nheaders];
  }
}

static void add_header(fake_request* r, const char* key, int key_len, const char* value, int value_len) {
  if (r->nheaders == MaxHeaders) {
    violation("too many headers");
    return;
  }
  r->headers[r->nheaders].key = dupn(key, key_len);
  r->headers[r->nheaders].value = dupn(value, value_len);
  r->nheaders++;
}

static void record_mutation(fake_request* r, const char* op, const char* key, int key_len) {
  if (r->nmutations < MaxHeaders * 2) {
    snprintf(r->mutations[r->nmutations++], 160, "%s %.*s", op, key_len, key);
  }
}

CAPIStatus envoyGoFilterHttpSetHeaderHelper(void* s, void* key, int key_len, void* value, int value_len,
                                            headerAction action) {
  fake_request* r = request_of_state(s);
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "SetHeader outside Go processing")) {
    st = CAPINotInGo;
  } else if (r->decoding.state != ProcessingHeader) {
    st = CAPIInvalidPhase;
  } else {
    if (action == HeaderSet) {
      remove_header(r, key, key_len);
    }
    add_header(r, key, key_len, value, value_len);
    record_mutation(r, action == HeaderSet ? "set" : "add", key, key_len);
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpRemoveHeader(void* s, void* key, int key_len) {
  fake_request* r = request_of_state(s);
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "RemoveHeader outside Go processing")) {
    st = CAPINotInGo;
  } else {
    remove_header(r, key, key_len);
    record_mutation(r, "remove", key, key_len);
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpGetStringValue(void* rp, int id, uint64_t* value_data, int* value_len) {
  fake_request* r = rp;
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIValueNotFound;
  if (!in_go_request(r, "GetStringValue outside Go processing")) {
    st = CAPINotInGo;
  } else if (id == ValueUpstreamClusterName && r->cluster != NULL) {
    *value_data = (uint64_t)(uintptr_t)r->cluster;
    *value_len = (int)strlen(r->cluster);
    st = CAPIOK;
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpGetIntegerValue(void* rp, int id, uint64_t* value) {
  (void)id;
  (void)value;
  fake_request* r = rp;
  pthread_mutex_lock(&mu);
  CAPIStatus st = in_go_request(r, "GetIntegerValue outside Go processing") ? CAPIValueNotFound : CAPINotInGo;
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpGetStringSecret(void* rp, void* key, int key_len, uint64_t* value_data, int* value_len) {
  fake_request* r = rp;
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "GetStringSecret outside Go processing")) {
    st = CAPINotInGo;
  } else {
    *value_len = -1;
    for (int i = 0; i < nsecrets; i++) {
      if ((int)strlen(secrets[i].key) == key_len && strncmp(secrets[i].key, key, key_len) == 0) {
        *value_data = (uint64_t)(uintptr_t)secrets[i].value;
        *value_len = (int)strlen(secrets[i].value);
      }
    }
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpGetDynamicMetadata(void* rp, void* name_data, int name_len, uint64_t* buf_data,
                                               int* buf_len) {
  fake_request* r = rp;
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (!in_go_request(r, "GetDynamicMetadata outside Go processing")) {
    st = CAPINotInGo;
  } else if (metadata_namespace != NULL && (int)strlen(metadata_namespace) == name_len &&
             strncmp(metadata_namespace, name_data, name_len) == 0) {
    *buf_data = (uint64_t)(uintptr_t)metadata_bytes;
    *buf_len = (int)metadata_len;
  } else {
    // Envoy serializes an absent namespace as an empty Struct.
    *buf_data = 0;
    *buf_len = 0;
  }
  pthread_mutex_unlock(&mu);
  return st;
}

void envoyGoFilterHttpFinalize(void* rp, int reason) {
  (void)reason;
  fake_request* r = rp;
  pthread_mutex_lock(&mu);
  requests_finalized++;
  for (int i = 0; i < r->nheaders; i++) {
    free(r->headers[i].key);
    free(r->headers[i].value);
  }
  for (int i = 0; i < r->nreply_headers; i++) {
    free(r->reply_headers[i].key);
    free(r->reply_headers[i].value);
  }
  free(r->reply_body);
  free(r->reply_details);
  free((void*)r->cluster);
  free(r);
  pthread_mutex_unlock(&mu);
}

void envoyGoConfigHttpFinalize(void* c) {
  pthread_mutex_lock(&mu);
  configs_finalized++;
  fake_config* fc = c;
  for (int i = 0; i < nconfigs; i++) {
    if (configs[i] == fc) {
      configs[i] = NULL;
    }
  }
  free(fc->bytes);
  free(fc);
  pthread_mutex_unlock(&mu);
}

// --- metrics: one store, as Envoy's scope shares stats by name and type ---

CAPIStatus envoyGoFilterHttpDefineMetric(void* c, uint32_t type, void* name, int name_len, uint32_t* id) {
  fake_config* fc = c;
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (fc->destroyed) {
    st = CAPIFilterIsGone;
  } else {
    int i;
    for (i = 0; i < nmetrics; i++) {
      if (metrics[i].type == type && (int)strlen(metrics[i].name) == name_len &&
          strncmp(metrics[i].name, name, name_len) == 0) {
        break;
      }
    }
    if (i == nmetrics && nmetrics < MaxMetrics) {
      metrics[nmetrics].name = dupn(name, name_len);
      metrics[nmetrics].type = type;
      nmetrics++;
    }
    *id = (uint32_t)i + 1;
  }
  pthread_mutex_unlock(&mu);
  return st;
}

static CAPIStatus update_metric(void* c, uint32_t id, int64_t v, int record) {
  fake_config* fc = c;
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (fc->destroyed) {
    st = CAPIFilterIsGone;
  } else if (id == 0 || id > (uint32_t)nmetrics) {
    st = CAPIValueNotFound;
  } else {
    metric* m = &metrics[id - 1];
    if (m->type == 1 && record) {
      m->value = v; // gauge Record sets
    } else if (m->type == 1 || v > 0) {
      m->value += v; // counter Increment ignores n <= 0; counter Record adds
    }
  }
  pthread_mutex_unlock(&mu);
  return st;
}

CAPIStatus envoyGoFilterHttpIncrementMetric(void* c, uint32_t id, int64_t offset) {
  return update_metric(c, id, offset, 0);
}

CAPIStatus envoyGoFilterHttpRecordMetric(void* c, uint32_t id, uint64_t value) {
  return update_metric(c, id, (int64_t)value, 1);
}

CAPIStatus envoyGoFilterHttpGetMetric(void* c, uint32_t id, uint64_t* value) {
  fake_config* fc = c;
  pthread_mutex_lock(&mu);
  CAPIStatus st = CAPIOK;
  if (fc->destroyed) {
    st = CAPIFilterIsGone;
  } else if (id == 0 || id > (uint32_t)nmetrics) {
    st = CAPIValueNotFound;
  } else {
    *value = (uint64_t)metrics[id - 1].value;
  }
  pthread_mutex_unlock(&mu);
  return st;
}

// --- commands ---

static char* read_file(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* b = malloc(n > 0 ? n : 1);
  if (fread(b, 1, n, f) != (size_t)n) {
    perror(path);
    exit(2);
  }
  fclose(f);
  *len = n;
  return b;
}

static void cmd_config(const char* kind, const char* path) {
  fake_config* fc = calloc(1, sizeof *fc);
  size_t len;
  fc->bytes = read_file(path, &len);
  fc->base.plugin_name_ptr = (uint64_t)(uintptr_t)plugin_name;
  fc->base.plugin_name_len = strlen(plugin_name);
  fc->base.config_ptr = (uint64_t)(uintptr_t)fc->bytes;
  fc->base.config_len = len;
  fc->base.is_route_config = strcmp(kind, "route") == 0;
  fc->base.concurrency = MaxWorkers;
  int is_route = fc->base.is_route_config;
  pthread_mutex_lock(&mu);
  if (!is_route) {
    configs_created++;
  }
  if (nconfigs < MaxConfigs) {
    configs[nconfigs++] = fc;
  }
  pthread_mutex_unlock(&mu);
  uint64_t id = newHttpPluginConfig(&fc->base);
  pthread_mutex_lock(&mu);
  fc->id = id;
  pthread_mutex_unlock(&mu);
  // A rejected filter config is still finalized by Go's GC; a route config
  // never reaches Go's finalizer and stays with the host.
  printf("CONFIG %llu\n", (unsigned long long)id);
}

static void cmd_destroy(uint64_t id) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nconfigs; i++) {
    if (configs[i] != NULL && configs[i]->id == id) {
      configs[i]->destroyed = 1; // Envoy's config is gone before Go hears of it
    }
  }
  pthread_mutex_unlock(&mu);
  destroyHttpPluginConfig(id, 0);
  printf("DESTROYED %llu\n", (unsigned long long)id);
}

static void print_escaped(const char* s) {
  for (; *s; s++) {
    if (*s == '\n') {
      fputs("\\n", stdout);
    } else {
      fputc(*s, stdout);
    }
  }
}

// new_request builds a stream for config ID args[0], routed to cluster
// args[1] ("-": none), on worker args[2], with NAME=VALUE headers.
static fake_request* new_request(char** args, int nargs, uint64_t* bytes) {
  fake_request* r = calloc(1, sizeof *r);
  r->base.plugin_name.data = plugin_name;
  r->base.plugin_name.len = strlen(plugin_name);
  r->base.configId = strtoull(args[0], NULL, 10);
  r->base.worker_id = (uint32_t)atoi(args[2]) % MaxWorkers;
  r->decoding.req = &r->base;
  r->decoding.is_encoding = 0;
  r->decoding.state = ProcessingHeader;
  r->encoding.req = &r->base;
  r->encoding.is_encoding = 1;
  r->encoding.state = ProcessingHeader;
  r->cluster = strcmp(args[1], "-") == 0 ? NULL : strdup(args[1]);
  *bytes = 0;
  for (int i = 3; i < nargs; i++) {
    char* eq = strchr(args[i], '=');
    if (eq == NULL || eq == args[i]) {
      printf("ERROR header %s is not NAME=VALUE\n", args[i]);
      continue;
    }
    add_header(r, args[i], (int)(eq - args[i]), eq + 1, (int)strlen(eq + 1));
    *bytes += strlen(args[i]) - 1;
  }
  pthread_mutex_lock(&mu);
  requests_created++;
  pthread_mutex_unlock(&mu);
  return r;
}

// call_go marks r as processed by Go around fn, as Envoy's ProcessorState
// does, so that request-scoped calls back into the host are allowed.
#define call_go(r, call)                              \
  do {                                                \
    __atomic_store_n(&(r)->in_go, 1, __ATOMIC_SEQ_CST); \
    call;                                             \
    __atomic_store_n(&(r)->in_go, 0, __ATOMIC_SEQ_CST); \
  } while (0)

static uint64_t decode_headers(fake_request* r, uint64_t bytes) {
  uint64_t status;
  call_go(r, status = onHttpHeader(&r->decoding, 1, (uint64_t)r->nheaders, bytes));
  return status;
}

// Streams the library saw and Envoy has not destroyed yet, by number.
static fake_request* streams[MaxStreams];
static int nstreams;

static void cmd_request(char** args, int nargs) {
  if (nargs < 3) {
    printf("ERROR request CONFIG CLUSTER WORKER [NAME=VALUE]...\n");
    return;
  }
  if (nstreams == MaxStreams) {
    printf("ERROR too many open streams\n");
    return;
  }
  uint64_t bytes;
  fake_request* r = new_request(args, nargs, &bytes);
  uint64_t status = decode_headers(r, bytes);

  pthread_mutex_lock(&mu);
  printf("STATUS %llu\n", (unsigned long long)status);
  if (r->reply_code != 0) {
    printf("REPLY %d %s ", r->reply_code, r->reply_details);
    print_escaped(r->reply_body);
    printf("\n");
    for (int i = 0; i < r->nreply_headers; i++) {
      printf("REPLYHEADER %s %s\n", r->reply_headers[i].key, r->reply_headers[i].value);
    }
  }
  if (status == 1 && r->reply_code == 0) {
    violation("LocalReply status without SendLocalReply");
  }
  if (status == 2 && r->reply_code != 0) {
    violation("Continue status after SendLocalReply");
  }
  for (int i = 0; i < r->nmutations; i++) {
    printf("MUTATION %s\n", r->mutations[i]);
  }
  for (int i = 0; i < r->nheaders; i++) {
    printf("HEADER %s %s\n", r->headers[i].key, r->headers[i].value);
  }
  pthread_mutex_unlock(&mu);
  // The stream stays open until "end": an upgrade lives as long as its
  // session, and a refused or failed one ends when Envoy is done with it.
  int id = 0;
  while (streams[id] != NULL) {
    id++;
  }
  streams[id] = r;
  nstreams++;
  printf("END %d\n", id);
}

static void cmd_end(int id) {
  if (id < 0 || id >= MaxStreams || streams[id] == NULL) {
    printf("ERROR no open stream %d\n", id);
    return;
  }
  fake_request* r = streams[id];
  streams[id] = NULL;
  nstreams--;
  // Envoy's Filter::onDestroy; Go's GC later finalizes r.
  onHttpDestroy(&r->base, 0);
  printf("ENDED %d\n", id);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void cmd_bench(char** args, int nargs) {
  if (nargs < 4) {
    printf("ERROR bench CONFIG CLUSTER REQUESTS CHUNKS [NAME=VALUE]...\n");
    return;
  }
  long requests = atol(args[2]), chunks = atol(args[3]);
  // new_request wants CONFIG CLUSTER WORKER headers...: worker 0.
  char* rargs[MaxHeaders + 8];
  int n = 0;
  rargs[n++] = args[0];
  rargs[n++] = args[1];
  rargs[n++] = "0";
  for (int i = 4; i < nargs && n < MaxHeaders + 8; i++) {
    rargs[n++] = args[i];
  }
  char chunk[1024] = {0}; // stands in for Envoy's Buffer::Instance, which a pass-through never reads
  int64_t request_ns = 0, chunk_ns = 0;
  for (long i = 0; i < requests; i++) {
    uint64_t bytes;
    fake_request* r = new_request(rargs, n, &bytes);
    int64_t t0 = now_ns();
    uint64_t status = decode_headers(r, bytes);
    // The response headers (the upgrade's 101) come before response data.
    call_go(r, onHttpHeader(&r->encoding, 0, 0, 0));
    int64_t t1 = now_ns();
    if (status == 2) {
      r->decoding.state = ProcessingData;
      r->encoding.state = ProcessingData;
      for (long c = 0; c < chunks; c++) {
        call_go(r, onHttpData(&r->decoding, 0, (uint64_t)(uintptr_t)chunk, sizeof chunk));
        call_go(r, onHttpData(&r->encoding, 0, (uint64_t)(uintptr_t)chunk, sizeof chunk));
      }
    }
    int64_t t2 = now_ns();
    onHttpLog(&r->base, AccessLogDownstreamEnd, &r->decoding, &r->encoding, (uint64_t)r->nheaders, bytes, 0, 0, 0,
              0, 0, 0);
    onHttpDestroy(&r->base, 0);
    int64_t t3 = now_ns();
    request_ns += (t1 - t0) + (t3 - t2);
    chunk_ns += t2 - t1;
  }
  printf("BENCH %lld %lld\n", (long long)request_ns, (long long)chunk_ns);
}

static void cmd_stats(void) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nmetrics; i++) {
    printf("METRIC %s %lld\n", metrics[i].name, (long long)metrics[i].value);
  }
  printf("END\n");
  pthread_mutex_unlock(&mu);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s LIBRARY.so < commands\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  load(argv[1]);
  printf("LOADED\n");

  char line[8192];
  while (fgets(line, sizeof line, stdin) != NULL) {
    char* args[MaxHeaders + 8];
    int n = 0;
    for (char* tok = strtok(line, " \t\r\n"); tok != NULL && n < MaxHeaders + 8; tok = strtok(NULL, " \t\r\n")) {
      args[n++] = tok;
    }
    if (n == 0) {
      continue;
    }
    if (strcmp(args[0], "config") == 0 && n == 3) {
      cmd_config(args[1], args[2]);
    } else if (strcmp(args[0], "merge") == 0 && n == 3) {
      uint64_t id = mergeHttpPluginConfig((uint64_t)(uintptr_t)plugin_name, strlen(plugin_name),
                                          strtoull(args[1], NULL, 10), strtoull(args[2], NULL, 10));
      printf("MERGED %llu\n", (unsigned long long)id);
    } else if (strcmp(args[0], "secret") == 0 && n == 3 && nsecrets < MaxSecrets) {
      pthread_mutex_lock(&mu);
      secrets[nsecrets].key = strdup(args[1]);
      secrets[nsecrets].value = strdup(args[2]);
      nsecrets++;
      pthread_mutex_unlock(&mu);
      printf("OK\n");
    } else if (strcmp(args[0], "metadata") == 0 && n == 3) {
      size_t len = 0;
      char* bytes = strcmp(args[2], "-") == 0 ? NULL : read_file(args[2], &len);
      pthread_mutex_lock(&mu);
      free(metadata_namespace);
      free(metadata_bytes);
      metadata_namespace = bytes == NULL ? NULL : strdup(args[1]);
      metadata_bytes = bytes;
      metadata_len = len;
      pthread_mutex_unlock(&mu);
      printf("OK\n");
    } else if (strcmp(args[0], "request") == 0) {
      cmd_request(args + 1, n - 1);
    } else if (strcmp(args[0], "end") == 0 && n == 2) {
      cmd_end(atoi(args[1]));
    } else if (strcmp(args[0], "bench") == 0) {
      cmd_bench(args + 1, n - 1);
    } else if (strcmp(args[0], "stats") == 0) {
      cmd_stats();
    } else if (strcmp(args[0], "destroy") == 0 && n == 2) {
      cmd_destroy(strtoull(args[1], NULL, 10));
    } else {
      printf("ERROR unknown command %s\n", args[0]);
    }
  }

  // Envoy destroys every stream it still has.
  for (int id = 0; id < MaxStreams; id++) {
    if (streams[id] != NULL) {
      onHttpDestroy(&streams[id]->base, 0);
      streams[id] = NULL;
    }
  }
  // Let Go's GC finalize what it holds, then report.
  for (int i = 0; i < 10; i++) {
    cleanUp();
    pthread_mutex_lock(&mu);
    int done = requests_finalized == requests_created && configs_finalized == configs_created;
    pthread_mutex_unlock(&mu);
    if (done) {
      break;
    }
    usleep(100 * 1000);
  }
  pthread_mutex_lock(&mu);
  printf("FINALIZED %d %d %d %d\n", requests_finalized, requests_created, configs_finalized, configs_created);
  printf("VIOLATIONS %d\n", violations);
  pthread_mutex_unlock(&mu);
  return 0;
}
