/* lrc runtime: load and run models compiled by `lrc` (CompiledModel.save).
 *
 * A compiled entry point takes one pointer per input and per output, each to a ranked memref
 * descriptor (MLIR's C interface). Buffers are dense row-major float32 arrays owned by the caller.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LRC_MAX_RANK 8
#define LRC_MAX_ARGS 16

#define LRC_DEFINE_MEMREF(R)   \
  typedef struct {             \
    float *allocated;          \
    float *aligned;            \
    int64_t offset;            \
    int64_t sizes[R];          \
    int64_t strides[R];        \
  } lrc_memref_##R##d_t;
LRC_DEFINE_MEMREF(1)
LRC_DEFINE_MEMREF(2)
LRC_DEFINE_MEMREF(3)
LRC_DEFINE_MEMREF(4)
LRC_DEFINE_MEMREF(5)
LRC_DEFINE_MEMREF(6)
LRC_DEFINE_MEMREF(7)
LRC_DEFINE_MEMREF(8)

typedef struct {
  int rank;
  int64_t dims[LRC_MAX_RANK];
} lrc_shape_t;

typedef struct lrc_model lrc_model_t;

/* Open an artifact directory (model.meta, model.so, and the weights file model.meta names, which is
 * copied into the model here). Returns NULL and fills `err` on failure. */
lrc_model_t *lrc_model_open(const char *dir, char *err, size_t err_len);
void lrc_model_close(lrc_model_t *m);
int lrc_model_num_inputs(const lrc_model_t *m);
int lrc_model_num_outputs(const lrc_model_t *m);
const lrc_shape_t *lrc_model_input_shape(const lrc_model_t *m, int i);
const lrc_shape_t *lrc_model_output_shape(const lrc_model_t *m, int i);
int64_t lrc_shape_numel(const lrc_shape_t *s);

/* Run once. inputs/outputs: dense float32 buffers of the declared shapes. Returns 0 on success. */
int lrc_model_run(lrc_model_t *m, float *const *inputs, float *const *outputs);

/* Monotonic clock in seconds, for timing harnesses. */
double lrc_now(void);

#ifdef __cplusplus
}
#endif
