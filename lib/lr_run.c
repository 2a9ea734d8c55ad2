/* lr-run: run an lrc artifact. Times it (median of --iters after --warmup) or, with --input /
 * --output, reads raw float32 inputs and writes raw float32 outputs (for numerics checks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lrc/runtime.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int read_raw(const char *path, float *buf, int64_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "lr-run: cannot open input '%s'\n", path); return -1; }
  size_t got = fread(buf, sizeof(float), (size_t)n, f);
  int extra = fgetc(f) != EOF;
  fclose(f);
  if ((int64_t)got != n || extra) {
    fprintf(stderr, "lr-run: input '%s' must hold exactly %lld float32 values\n", path, (long long)n);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: lr-run ARTIFACT_DIR [--iters N] [--warmup N] [--input F]... [--output F]...\n");
    return 2;
  }
  int iters = 10, warmup = -1, n_inf = 0, n_outf = 0;
  const char *inf[LRC_MAX_ARGS], *outf[LRC_MAX_ARGS];
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--input") && i + 1 < argc && n_inf < LRC_MAX_ARGS) inf[n_inf++] = argv[++i];
    else if (!strcmp(argv[i], "--output") && i + 1 < argc && n_outf < LRC_MAX_ARGS) outf[n_outf++] = argv[++i];
    else { fprintf(stderr, "lr-run: unknown argument '%s'\n", argv[i]); return 2; }
  }
  char err[512];
  lrc_model_t *m = lrc_model_open(argv[1], err, sizeof err);
  if (!m) { fprintf(stderr, "lr-run: %s\n", err); return 1; }
  int ni = lrc_model_num_inputs(m), no = lrc_model_num_outputs(m);
  if (n_inf && n_inf != ni) { fprintf(stderr, "lr-run: model has %d inputs, %d --input given\n", ni, n_inf); return 2; }
  float *in[LRC_MAX_ARGS], *out[LRC_MAX_ARGS];
  for (int i = 0; i < ni; i++) {
    int64_t n = lrc_shape_numel(lrc_model_input_shape(m, i));
    in[i] = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (n_inf) {
      if (read_raw(inf[i], in[i], n)) return 1;
    } else {
      unsigned s = 12345u + i;  /* deterministic pseudo-random input */
      for (int64_t j = 0; j < n; j++) { s = s * 1103515245u + 12345u; in[i][j] = ((s >> 8) & 0xffff) / 65536.0f - 0.5f; }
    }
  }
  for (int i = 0; i < no; i++) {
    int64_t n = lrc_shape_numel(lrc_model_output_shape(m, i));
    out[i] = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
  }
  /* with files: one run, after --warmup runs only if asked (they reuse the model's arena, which is
   * how a test sees that a second call does not depend on what the first left there) */
  if (n_inf || n_outf) iters = 1, warmup = warmup < 0 ? 0 : warmup;
  if (warmup < 0) warmup = 2;
  if (iters < 1) iters = 1;
  for (int i = 0; i < warmup; i++) lrc_model_run(m, in, out);
  double *t = malloc(sizeof(double) * iters);
  for (int i = 0; i < iters; i++) {
    double t0 = lrc_now();
    if (lrc_model_run(m, in, out)) { fprintf(stderr, "lr-run: run failed\n"); return 1; }
    t[i] = lrc_now() - t0;
  }
  for (int i = 0; i < n_outf && i < no; i++) {
    FILE *f = fopen(outf[i], "wb");
    if (!f) { fprintf(stderr, "lr-run: cannot write '%s'\n", outf[i]); return 1; }
    fwrite(out[i], sizeof(float), (size_t)lrc_shape_numel(lrc_model_output_shape(m, i)), f);
    fclose(f);
  }
  qsort(t, iters, sizeof(double), cmp);
  printf("median_ms %.3f min_ms %.3f iters %d\n", t[iters / 2] * 1e3, t[0] * 1e3, iters);
  lrc_model_close(m);
  return 0;
}
