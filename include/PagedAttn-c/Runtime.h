/*===- PagedAttn-c/Runtime.h - C API of the PagedAttn runtime -----*- C -*-===*\
|*                                                                            *|
|* Every function returning paged_attn_status leaves, on failure, a message  *|
|* for the calling thread in paged_attn_last_error().                        *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef PAGEDATTN_C_RUNTIME_H
#define PAGEDATTN_C_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  PAGED_ATTN_OK = 0,
  PAGED_ATTN_INVALID_ARGUMENT = 1,
  PAGED_ATTN_NOT_FOUND = 2,
  PAGED_ATTN_NO_DRIVER = 3,
  PAGED_ATTN_CUDA_ERROR = 4,
  PAGED_ATTN_BAD_PAGE_TABLE = 5,
  PAGED_ATTN_PARSE_ERROR = 6
} paged_attn_status;

typedef enum {
  PAGED_ATTN_F16 = 0,
  PAGED_ATTN_BF16 = 1,
  PAGED_ATTN_F32 = 2,
  PAGED_ATTN_I32 = 3,
  PAGED_ATTN_I64 = 4, /* an append's slot_mapping */
  PAGED_ATTN_I8 = 5,  /* a multi-token decode's tree mask (bool bytes) */
  /* OCP fp8: quantised KV caches (paged_attn_config's kv_dtype) */
  PAGED_ATTN_F8E4M3FN = 6,
  PAGED_ATTN_F8E5M2 = 7
} paged_attn_dtype;

typedef enum { PAGED_ATTN_NHD = 0, PAGED_ATTN_HND = 1 } paged_attn_layout;

/* A strided view of device memory; sizes and strides in elements. */
typedef struct {
  void *data;
  paged_attn_dtype dtype;
  int32_t rank;
  int64_t sizes[4];
  int64_t strides[4];
} paged_attn_tensor;

/* The attention variants a config's kernels have (paged_attn_config's
 * `variants`, a bitwise or); their values are decode parameters. */
enum {
  PAGED_ATTN_VARIANT_WINDOW = 1,
  PAGED_ATTN_VARIANT_SOFT_CAP = 2,
  PAGED_ATTN_VARIANT_ALIBI = 4,
  PAGED_ATTN_VARIANT_SINKS = 8,
  PAGED_ATTN_VARIANT_LSE = 16,
  PAGED_ATTN_VARIANT_TREE_MASK = 32, /* multi-token decodes */
};

/* Where a quantised cache's scales are (paged_attn_config's kv_scale):
 * none (the caches have q's dtype), one f32 per cache, one per KV head, or
 * one per token and KV head. */
typedef enum {
  PAGED_ATTN_KV_UNQUANTIZED = 0,
  PAGED_ATTN_KV_SCALE_TENSOR = 1, /* k_scale, v_scale: rank 0 */
  PAGED_ATTN_KV_SCALE_HEAD = 2,   /* [num_kv_heads] */
  PAGED_ATTN_KV_SCALE_TOKEN = 3   /* the cache's shape without head_dim */
} paged_attn_kv_scale;

typedef struct {
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  int64_t page_size;
  paged_attn_dtype dtype;
  paged_attn_layout layout;
  int64_t num_warps; /* 0 means the default, 4 */
  uint32_t variants; /* PAGED_ATTN_VARIANT_* flags; 0 for plain decode */
  /* New query tokens per sequence, 1 to 16 (0 means 1): a multi-token
   * decode (L > 1, or with a tree mask) takes q and out of [batch, L,
   * num_heads, head_dim] and lse of [batch, L, num_heads]. */
  int64_t query_len;
  /* A paged_attn_kv_scale: nonzero, the caches are kv_dtype (an fp8
   * dtype, for an f16 or bf16 q) and element x of K (V) stands for x *
   * k_scale (x * v_scale); 0, they have q's dtype and kv_dtype is not
   * read. */
  int32_t kv_scale;
  paged_attn_dtype kv_dtype;
} paged_attn_config;

typedef struct {
  paged_attn_tensor q, k_cache, v_cache, block_table, seq_lens, out;
  float scale;         /* 0: 1/sqrt(head_dim) */
  int64_t max_seq_len; /* -1: the page table's capacity */
  int32_t num_splits;  /* 0: automatic */
  void *workspace;
  size_t workspace_bytes;
  int32_t check_page_table; /* nonzero: validate on the device first */
  /* The values of the config's variants; each must be set exactly when the
   * config has the variant (zero / a null data pointer otherwise). */
  int64_t window;                 /* >= 1: keys seq_len - window <= t */
  float soft_cap;                 /* > 0: s <- c * tanh(s / c) */
  paged_attn_tensor alibi_slopes; /* [num_heads] f32 */
  paged_attn_tensor sinks;        /* [num_heads] f32 */
  paged_attn_tensor lse;          /* [batch, num_heads] f32, written */
  paged_attn_tensor tree_mask;    /* [batch, L, L] i8, with _TREE_MASK */
  /* A quantised config's scales (f32, any strides), set exactly when its
   * kv_scale is nonzero: rank 0 (_TENSOR), [num_kv_heads] (_HEAD), or per
   * token the cache's first three dims, nhd [pages, page, kv_heads], hnd
   * [pages, kv_heads, page] (_TOKEN). */
  paged_attn_tensor k_scale;
  paged_attn_tensor v_scale;
  /* With num_splits given, the fewest keys a split chunk takes (0: an even
   * split); 0 when num_splits is 0. */
  int32_t split_chunk;
  /* seq_lens as the host knows them ([batch] in host memory), or null:
   * an automatic split is then planned for them (a ragged batch's long
   * sequences take more CTAs). The launch is correct for any seq_lens on
   * the device; only its balance depends on these. */
  const int32_t *host_seq_lens;
} paged_attn_decode_params;

/* paged_attn.merge's config: partials and result of `dtype`, natural
 * log-sum-exps; `variants` takes PAGED_ATTN_VARIANT_SINKS and _LSE. */
typedef struct {
  int64_t num_heads;
  int64_t head_dim;
  paged_attn_dtype dtype;
  uint32_t variants;
} paged_attn_merge_config;

typedef struct {
  paged_attn_tensor partial_out; /* [N, batch, num_heads, head_dim] */
  paged_attn_tensor partial_lse; /* [N, batch, num_heads] f32 */
  paged_attn_tensor out;         /* [batch, num_heads, head_dim], written */
  paged_attn_tensor sinks;       /* [num_heads] f32, with the sinks variant */
  paged_attn_tensor lse; /* [batch, num_heads] f32, written, with _LSE */
} paged_attn_merge_params;

/* paged_attn.append's config: new K and V rows of `dtype` written into the
 * caches a decode of the same num_kv_heads, head_dim, page_size, dtype,
 * layout, kv_scale and kv_dtype reads (as paged_attn_config spells them:
 * kv_scale nonzero, the caches are kv_dtype, an fp8 dtype, and dtype f16
 * or bf16). */
typedef struct {
  int64_t num_kv_heads;
  int64_t head_dim;
  int64_t page_size;
  paged_attn_dtype dtype;
  paged_attn_layout layout;
  int32_t kv_scale; /* a paged_attn_kv_scale */
  paged_attn_dtype kv_dtype;
} paged_attn_append_config;

/* For each token t: slot = slot_mapping[t]; a slot < 0 (padding) or >=
 * num_pages * page_size is skipped; else row (slot / page_size, slot %
 * page_size, h) of each cache receives k[t, h] (v[t, h]), quantised for
 * fp8 caches. Tensors of T = 0 (or no pages) may have null data. */
typedef struct {
  paged_attn_tensor k;            /* [T, num_kv_heads, head_dim] */
  paged_attn_tensor v;            /* the shape and dtype of k */
  paged_attn_tensor slot_mapping; /* [T] PAGED_ATTN_I64 */
  paged_attn_tensor k_cache;      /* the decode's cache shape, written */
  paged_attn_tensor v_cache;      /* the shape of k_cache, written */
  /* Set exactly when kv_scale is nonzero, f32, any strides, as the
   * decode's: rank 0 (_TENSOR) or [num_kv_heads] (_HEAD), read; per token
   * (_TOKEN) the cache's first three dims, written. */
  paged_attn_tensor k_scale;
  paged_attn_tensor v_scale;
} paged_attn_append_params;

typedef struct paged_attn_library_s *paged_attn_library;
typedef struct paged_attn_decoder_s *paged_attn_decoder;
typedef struct paged_attn_merger_s *paged_attn_merger;
typedef struct paged_attn_appender_s *paged_attn_appender;

/* The message of the last failed call on this thread ("" if none). */
const char *paged_attn_last_error(void);
/* 1 when a usable CUDA driver is present. */
int paged_attn_has_driver(void);

/* Fills `params` with the defaults (max_seq_len -1, everything else 0). */
void paged_attn_decode_params_init(paged_attn_decode_params *params);
/* A contiguous (row-major) tensor view. A rank outside [0, 4], a null
 * `sizes` (for a rank above 0) or sizes whose product overflows int64_t
 * give a view of rank -1, which every later call refuses, and leave the
 * reason in paged_attn_last_error(). */
paged_attn_tensor paged_attn_tensor_contiguous(void *data,
                                               paged_attn_dtype dtype,
                                               int32_t rank,
                                               const int64_t *sizes);

paged_attn_status paged_attn_library_load(const char *manifest_path,
                                          paged_attn_library *library);
paged_attn_status
paged_attn_library_load_directory(const char *directory,
                                  paged_attn_library *library);
void paged_attn_library_destroy(paged_attn_library library);

paged_attn_status paged_attn_decoder_create(paged_attn_library library,
                                            const paged_attn_config *config,
                                            paged_attn_decoder *decoder);
void paged_attn_decoder_destroy(paged_attn_decoder decoder);

/* Bytes of workspace for `batch` sequences split `num_splits` ways, in
 * `bytes`: 0 when num_splits <= 1. PAGED_ATTN_INVALID_ARGUMENT for a batch
 * or num_splits outside [0, 65535] (paged_attn_decode takes no more) and
 * for a workspace larger than size_t holds. */
paged_attn_status
paged_attn_decoder_get_workspace_size(paged_attn_decoder decoder, int64_t batch,
                                      int32_t num_splits, size_t *bytes);
/* paged_attn_decoder_get_workspace_size as a bare size: 0 where that
 * fails, with paged_attn_last_error() saying why (and "" after a size was
 * returned, so that a 0 for an unsplit decode can be told from an error);
 * paged_attn_decode then fails the same way. */
size_t paged_attn_decoder_workspace_size(paged_attn_decoder decoder,
                                         int64_t batch, int32_t num_splits);
paged_attn_status
paged_attn_decoder_max_workspace_size(paged_attn_decoder decoder, int64_t batch,
                                      int64_t max_seq_len, size_t *bytes);

/* Launches on `stream` (a CUstream, NULL for the default stream); no
 * allocation, no synchronisation unless check_page_table is set. */
paged_attn_status paged_attn_decode(paged_attn_decoder decoder,
                                    const paged_attn_decode_params *params,
                                    void *stream);

/* The merge kernel of `config` in `library` (its manifests' "merges"). */
paged_attn_status
paged_attn_merger_create(paged_attn_library library,
                         const paged_attn_merge_config *config,
                         paged_attn_merger *merger);
void paged_attn_merger_destroy(paged_attn_merger merger);

/* Combines the partials by their log-sum-exps on `stream` (the op's
 * semantics); no allocation, no synchronisation. */
paged_attn_status paged_attn_merge(paged_attn_merger merger,
                                   const paged_attn_merge_params *params,
                                   void *stream);

/* The append kernel of `config` in `library` (its manifests' "appends"). */
paged_attn_status
paged_attn_appender_create(paged_attn_library library,
                           const paged_attn_append_config *config,
                           paged_attn_appender *appender);
void paged_attn_appender_destroy(paged_attn_appender appender);

/* Writes the new rows into the caches on `stream` (the op's semantics);
 * no allocation, no synchronisation; nothing is launched for T = 0. */
paged_attn_status paged_attn_append(paged_attn_appender appender,
                                    const paged_attn_append_params *params,
                                    void *stream);

#ifdef __cplusplus
}
#endif

#endif /* PAGEDATTN_C_RUNTIME_H */
