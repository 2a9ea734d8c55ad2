/* The lrc runtime: artifact loading (model.meta, dlopen model.so, weights from model.weights) and a
 * descriptor-building call shim. */
#define _POSIX_C_SOURCE 200809L
#include "lrc/runtime.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A descriptor with room for the largest rank; only the first `rank` sizes/strides are read by a
 * callee compiled for that rank, because MLIR lays sizes and strides out as two arrays of `rank`. */
typedef struct {
  float *allocated;
  float *aligned;
  int64_t offset;
  int64_t dims[2 * LRC_MAX_RANK];
} lrc_any_memref_t;

typedef void (*lrc_fn_t)();

struct lrc_model {
  void *lib;
  lrc_fn_t fn;
  lrc_fn_t arena_fn;      /* lrc_arena_<entry>: takes the arena as a last argument (NULL: none) */
  int64_t arena_bytes;    /* model.meta "arena" */
  void *arena;            /* allocated at the first run, kept: a per-call arena above glibc's mmap
                             threshold would be mapped and page-faulted in on every call */
  volatile int arena_busy; /* a second thread running the same model meanwhile allocates its own */
  int n_in, n_out;
  lrc_shape_t shapes[LRC_MAX_ARGS];
};

static void set_err(char *err, size_t n, const char *a, const char *b) {
  if (err && n) snprintf(err, n, "%s%s", a, b ? b : "");
}

typedef int (*lrc_set_weights_fn)(const void *, uint64_t);

/* Read `dir/file` whole and hand it to the model's lrc_set_weights (which checks that the blob
 * belongs to this build and copies it into place). Returns 0 on success. */
static int load_weights(void *lib, const char *dir, const char *file, char *err, size_t err_len) {
  static const char *why[] = {"", "is not an lrc weight blob", "has the wrong size for this model",
                              "belongs to a different build of this model"};
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  lrc_set_weights_fn set = (lrc_set_weights_fn)dlsym(lib, "lrc_set_weights");
  if (!set) {
    set_err(err, err_len, "missing symbol lrc_set_weights in model.so for ", path);
    return -1;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    set_err(err, err_len, "cannot open ", path);
    return -1;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = n > 0 ? malloc((size_t)n) : NULL;
  int rc = -1;
  if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
    rc = set(buf, (uint64_t)n);
    if (rc) {
      char msg[4200];
      snprintf(msg, sizeof msg, "%s %s", path, rc >= -3 ? why[-rc] : "was rejected");
      set_err(err, err_len, msg, NULL);
    }
  } else {
    set_err(err, err_len, "cannot read ", path);
  }
  free(buf);
  fclose(f);
  return rc;
}

lrc_model_t *lrc_model_open(const char *dir, char *err, size_t err_len) {
  char path[4096], entry[256] = "forward", weights[256] = "", line[1024];
  snprintf(path, sizeof path, "%s/model.meta", dir);
  FILE *f = fopen(path, "r");
  if (!f) {
    set_err(err, err_len, "cannot open ", path);
    return NULL;
  }
  lrc_model_t *m = calloc(1, sizeof *m);
  int n_args = 0, ok = 1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "entry ", 6) == 0) {
      sscanf(line + 6, "%255s", entry);
    } else if (strncmp(line, "weights ", 8) == 0) {
      sscanf(line + 8, "%255s", weights);
    } else if (strncmp(line, "arena ", 6) == 0) {
      long long a = 0;
      if (sscanf(line + 6, "%lld", &a) != 1 || a < 0) { ok = 0; break; }
      m->arena_bytes = a;
    } else if (strncmp(line, "in ", 3) == 0 || strncmp(line, "out ", 4) == 0) {
      int is_in = line[0] == 'i';
      if (n_args >= LRC_MAX_ARGS || (is_in && m->n_out)) { ok = 0; break; }
      lrc_shape_t *s = &m->shapes[n_args++];
      char *p = line + (is_in ? 3 : 4), *end;
      for (s->rank = 0; s->rank < LRC_MAX_RANK; s->rank++) {
        long long d = strtoll(p, &end, 10);
        if (end == p) break;
        s->dims[s->rank] = d;
        p = end;
      }
      if (is_in) m->n_in++; else m->n_out++;
    }
  }
  fclose(f);
  if (!ok || !m->n_out) {
    set_err(err, err_len, "malformed metadata: ", path);
    free(m);
    return NULL;
  }
  snprintf(path, sizeof path, "%s/model.so", dir);
  m->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!m->lib) {
    set_err(err, err_len, "dlopen failed: ", dlerror());
    free(m);
    return NULL;
  }
  char sym[300];
  snprintf(sym, sizeof sym, "_mlir_ciface_%s", entry);
  m->fn = (lrc_fn_t)dlsym(m->lib, sym);
  if (!m->fn) {
    set_err(err, err_len, "missing entry symbol ", sym);
    dlclose(m->lib);
    free(m);
    return NULL;
  }
  if (m->arena_bytes) {
    snprintf(sym, sizeof sym, "_mlir_ciface_lrc_arena_%s", entry);
    m->arena_fn = (lrc_fn_t)dlsym(m->lib, sym); /* absent: every call allocates its own */
  }
  if (weights[0] && load_weights(m->lib, dir, weights, err, err_len)) {
    dlclose(m->lib);
    free(m);
    return NULL;
  }
  return m;
}

void lrc_model_close(lrc_model_t *m) {
  if (!m) return;
  dlclose(m->lib);
  free(m->arena);
  free(m);
}

int lrc_model_num_inputs(const lrc_model_t *m) { return m->n_in; }
int lrc_model_num_outputs(const lrc_model_t *m) { return m->n_out; }
const lrc_shape_t *lrc_model_input_shape(const lrc_model_t *m, int i) { return &m->shapes[i]; }
const lrc_shape_t *lrc_model_output_shape(const lrc_model_t *m, int i) { return &m->shapes[m->n_in + i]; }

int64_t lrc_shape_numel(const lrc_shape_t *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

static void fill(lrc_any_memref_t *d, float *buf, const lrc_shape_t *s) {
  d->allocated = d->aligned = buf;
  d->offset = 0;
  int64_t stride = 1;
  for (int i = s->rank - 1; i >= 0; i--) {
    d->dims[i] = s->dims[i];
    d->dims[s->rank + i] = stride;
    stride *= s->dims[i];
  }
}

/* Every argument is a pointer, so calling through a prototype with the right count is exact. */
static int call(lrc_fn_t fn, void **a, int n) {
  typedef void *p;
  switch (n) {
    case 2: ((void (*)(p, p))fn)(a[0], a[1]); break;
    case 3: ((void (*)(p, p, p))fn)(a[0], a[1], a[2]); break;
    case 4: ((void (*)(p, p, p, p))fn)(a[0], a[1], a[2], a[3]); break;
    case 5: ((void (*)(p, p, p, p, p))fn)(a[0], a[1], a[2], a[3], a[4]); break;
    case 6: ((void (*)(p, p, p, p, p, p))fn)(a[0], a[1], a[2], a[3], a[4], a[5]); break;
    case 7: ((void (*)(p, p, p, p, p, p, p))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6]); break;
    case 8: ((void (*)(p, p, p, p, p, p, p, p))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); break;
    case 9: ((void (*)(p, p, p, p, p, p, p, p, p))fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]); break;
    default: return -1; /* more than 8 tensors in + out: not supported by this shim */
  }
  return 0;
}

int lrc_model_run(lrc_model_t *m, float *const *inputs, float *const *outputs) {
  lrc_any_memref_t d[LRC_MAX_ARGS + 1];
  void *a[LRC_MAX_ARGS + 1];
  int n = m->n_in + m->n_out;
  if (n > 8) return -1;
  for (int i = 0; i < n; i++) {
    fill(&d[i], i < m->n_in ? inputs[i] : outputs[i - m->n_in], &m->shapes[i]);
    a[i] = &d[i];
  }
  if (!m->arena_fn || __atomic_exchange_n(&m->arena_busy, 1, __ATOMIC_ACQUIRE)) return call(m->fn, a, n);
  if (!m->arena && posix_memalign(&m->arena, 64, (size_t)m->arena_bytes)) {
    m->arena = NULL;
    __atomic_store_n(&m->arena_busy, 0, __ATOMIC_RELEASE);
    return call(m->fn, a, n);
  }
  lrc_shape_t s = {1, {m->arena_bytes}};
  fill(&d[n], (float *)m->arena, &s); /* a 1-D i8 memref: same descriptor layout */
  a[n] = &d[n];
  int rc = call(m->arena_fn, a, n + 1);
  __atomic_store_n(&m->arena_busy, 0, __ATOMIC_RELEASE);
  return rc;
}

double lrc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
