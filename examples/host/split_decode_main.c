/* A C program around examples/host/split_decode.mlir, compiled to an object
 * file (paged-attn-to-host, mlir-translate, llc) and linked with
 * libpaged_attn_mgpu: it calls `_mlir_ciface_split_decode` on random
 * decodes (shuffled pages, ragged lengths with partial last pages, empty
 * and one-token sequences, splits at every page boundary) in device memory
 * it allocates and fills through the same mgpu* functions the object's
 * host code calls, and checks each result against attention over all the
 * sequence's tokens computed in double.
 *
 *   split-decode-example [--seed N] [--launch-only]
 *
 * Prints each case's errors and PASS or FAIL; exits 1 if any case fails or
 * any mgpu* call reported an error. --launch-only skips the comparison (for
 * a driver that runs no kernels, as test/standin-driver).
 */

#include "PagedAttn-c/Mgpu.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The configuration split_decode.mlir was written for. */
enum { HEADS = 16, KV_HEADS = 4, DIM = 64, PAGE = 16 };
static const double SOFT_CAP = 5.0;
/* The GPU tests' tolerances for bf16 (test/gpu, lib/Testing). */
static const double OUT_TOLERANCE = 1e-2, LSE_TOLERANCE = 2e-3;

/* Memref descriptors as the LLVM lowering lays them out. */
#define MEMREF(rank)                                                           \
  struct {                                                                     \
    void *allocated, *aligned;                                                 \
    int64_t offset, sizes[rank], strides[rank];                                \
  }
typedef MEMREF(1) memref1;
typedef MEMREF(2) memref2;
typedef MEMREF(3) memref3;
typedef MEMREF(4) memref4;

void _mlir_ciface_split_decode(memref3 *q, memref4 *k_cache, memref4 *v_cache,
                               memref2 *block_table, int64_t split,
                               memref1 *prefix_lens, memref1 *suffix_lens,
                               memref1 *sinks, memref4 *partials,
                               memref3 *partial_lse, memref3 *out,
                               memref2 *lse);

/* xorshift64*: the same numbers on every machine. */
static uint64_t rng_state;
static uint64_t next_u64(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}
static int64_t uniform_int(int64_t n) { return (int64_t)(next_u64() % n); }
static double uniform(double lo, double hi) {
  return lo + (hi - lo) * (double)(next_u64() >> 11) / 9007199254740992.0;
}

/* bf16 by rounding to nearest even, and back. */
static uint16_t to_bf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, 4);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return (uint16_t)(bits >> 16);
}
static double from_bf16(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* A dense descriptor of `rank` sizes over `data`. */
static void describe(void *descriptor, void *data, int rank,
                     const int64_t *sizes) {
  /* Every MEMREF(rank) starts with the same three fields. */
  memref1 *head = descriptor;
  int64_t *fields = (int64_t *)((char *)descriptor + offsetof(memref1, sizes));
  head->allocated = head->aligned = data;
  head->offset = 0;
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    fields[i] = sizes[i];
    fields[rank + i] = stride;
    stride *= sizes[i];
  }
}

static void *device_copy(void *host, size_t bytes, mgpu_stream stream) {
  void *d = mgpuMemAlloc(bytes, stream, 0);
  mgpuMemcpy(d, host, bytes, stream);
  return d;
}

struct case_result {
  double rel_error, max_abs_error, lse_error;
  int empty_rows_zero;
};

/* One random decode of `batch` sequences: run, then compare. */
static int run_case(uint64_t seed, int64_t batch, int launch_only) {
  rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
  const int64_t max_pages = 12, pool = batch * max_pages + 7;
  const int64_t split = 1 + uniform_int(max_pages - 1);
  const size_t q_n = batch * HEADS * DIM, kv_n = pool * PAGE * KV_HEADS * DIM;

  uint16_t *q = malloc(q_n * 2), *k = malloc(kv_n * 2), *v = malloc(kv_n * 2);
  int32_t *table = malloc(batch * max_pages * 4), *lens = malloc(batch * 4);
  int32_t *prefix = malloc(batch * 4), *suffix = malloc(batch * 4);
  int32_t *order = malloc(pool * 4);
  float sinks[HEADS];
  for (size_t i = 0; i < q_n; ++i)
    q[i] = to_bf16((float)uniform(-2, 2));
  for (size_t i = 0; i < kv_n; ++i) {
    k[i] = to_bf16((float)uniform(-1, 1));
    v[i] = to_bf16((float)uniform(-1, 1));
  }
  for (int h = 0; h < HEADS; ++h)
    sinks[h] = (float)uniform(-1, 1);
  /* Pages handed out in a shuffled order, none shared. */
  for (int64_t i = 0; i < pool; ++i)
    order[i] = (int32_t)i;
  for (int64_t i = pool - 1; i > 0; --i) {
    int64_t j = uniform_int(i + 1);
    int32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (int64_t i = 0; i < batch * max_pages; ++i)
    table[i] = order[i];
  /* Ragged lengths; in a batch of 5 or more the first five are the edges:
   * empty, one token, the split exactly, the whole table, one past the
   * split. */
  const int32_t edges[] = {0, 1, (int32_t)(split * PAGE),
                           (int32_t)(max_pages * PAGE),
                           (int32_t)(split * PAGE + 1)};
  for (int64_t b = 0; b < batch; ++b) {
    lens[b] = batch >= 5 && b < 5 ? edges[b]
                                  : (int32_t)uniform_int(max_pages * PAGE + 1);
    prefix[b] = lens[b] < split * PAGE ? lens[b] : (int32_t)(split * PAGE);
    suffix[b] = lens[b] - prefix[b];
  }

  mgpu_stream stream = mgpuStreamCreate();
  void *dq = device_copy(q, q_n * 2, stream);
  void *dk = device_copy(k, kv_n * 2, stream);
  void *dv = device_copy(v, kv_n * 2, stream);
  void *dtable = device_copy(table, batch * max_pages * 4, stream);
  void *dprefix = device_copy(prefix, batch * 4, stream);
  void *dsuffix = device_copy(suffix, batch * 4, stream);
  void *dsinks = device_copy(sinks, sizeof(sinks), stream);
  void *dparts = mgpuMemAlloc(2 * q_n * 2, stream, 0);
  void *dplse = mgpuMemAlloc(2 * batch * HEADS * 4, stream, 0);
  void *dout = mgpuMemAlloc(q_n * 2, stream, 0);
  void *dlse = mgpuMemAlloc(batch * HEADS * 4, stream, 0);
  /* NaNs, so that a row nothing writes shows. */
  mgpuMemset16(dout, 0xFFFF, q_n, stream);
  mgpuMemset32(dlse, 0xFFFFFFFFu, batch * HEADS, stream);
  mgpuStreamSynchronize(stream);
  /* Without a driver or module, nothing below can mean anything. */
  const int set_up = paged_attn_mgpu_error_count() == 0;

  memref3 mq, mout, mplse;
  memref4 mk, mv, mparts;
  memref2 mtable, mlse;
  memref1 mprefix, msuffix, msinks;
  describe(&mq, dq, 3, (int64_t[]){batch, HEADS, DIM});
  describe(&mk, dk, 4, (int64_t[]){pool, PAGE, KV_HEADS, DIM});
  describe(&mv, dv, 4, (int64_t[]){pool, PAGE, KV_HEADS, DIM});
  describe(&mtable, dtable, 2, (int64_t[]){batch, max_pages});
  describe(&mprefix, dprefix, 1, (int64_t[]){batch});
  describe(&msuffix, dsuffix, 1, (int64_t[]){batch});
  describe(&msinks, dsinks, 1, (int64_t[]){HEADS});
  describe(&mparts, dparts, 4, (int64_t[]){2, batch, HEADS, DIM});
  describe(&mplse, dplse, 3, (int64_t[]){2, batch, HEADS});
  describe(&mout, dout, 3, (int64_t[]){batch, HEADS, DIM});
  describe(&mlse, dlse, 2, (int64_t[]){batch, HEADS});
  /* The function waits for its kernels before it returns. */
  if (set_up)
    _mlir_ciface_split_decode(&mq, &mk, &mv, &mtable, split, &mprefix, &msuffix,
                              &msinks, &mparts, &mplse, &mout, &mlse);

  uint16_t *out = calloc(q_n, 2);
  float *lse = calloc(batch * HEADS, 4);
  mgpuMemcpy(out, dout, q_n * 2, stream);
  mgpuMemcpy(lse, dlse, batch * HEADS * 4, stream);
  mgpuStreamSynchronize(stream);
  void *buffers[] = {dq,     dk,     dv,    dtable, dprefix, dsuffix,
                     dsinks, dparts, dplse, dout,   dlse};
  for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); ++i)
    mgpuMemFree(buffers[i], stream);
  mgpuStreamDestroy(stream);

  /* Attention over all n tokens of each sequence, in double. */
  double num = 0, den = 0, max_abs = 0, lse_err = 0;
  int empty_zero = 1;
  double *logits = malloc(max_pages * PAGE * sizeof(double));
  const double scale = 1.0 / sqrt((double)DIM);
  for (int64_t b = 0; b < batch; ++b) {
    for (int h = 0; h < HEADS; ++h) {
      int g = h / (HEADS / KV_HEADS);
      const uint16_t *qrow = q + (b * HEADS + h) * DIM;
      const uint16_t *orow = out + (b * HEADS + h) * DIM;
      double m = -INFINITY, sum = 0, acc[DIM] = {0};
      for (int32_t t = 0; t < lens[b]; ++t) {
        int64_t page = table[b * max_pages + t / PAGE];
        const uint16_t *krow =
            k + ((page * PAGE + t % PAGE) * KV_HEADS + g) * DIM;
        double s = 0;
        for (int d = 0; d < DIM; ++d)
          s += from_bf16(qrow[d]) * from_bf16(krow[d]);
        logits[t] = SOFT_CAP * tanh(s * scale / SOFT_CAP);
        if (logits[t] > m)
          m = logits[t];
      }
      for (int32_t t = 0; t < lens[b]; ++t) {
        int64_t page = table[b * max_pages + t / PAGE];
        const uint16_t *vrow =
            v + ((page * PAGE + t % PAGE) * KV_HEADS + g) * DIM;
        double w = exp(logits[t] - m);
        sum += w;
        for (int d = 0; d < DIM; ++d)
          acc[d] += w * from_bf16(vrow[d]);
      }
      double got_lse = lse[b * HEADS + h];
      if (lens[b] == 0) {
        for (int d = 0; d < DIM; ++d)
          empty_zero &= from_bf16(orow[d]) == 0.0;
        if (!(isinf(got_lse) && got_lse < 0))
          lse_err = INFINITY;
        continue;
      }
      double denominator = sum + exp(sinks[h] - m);
      for (int d = 0; d < DIM; ++d) {
        double want = acc[d] / denominator, got = from_bf16(orow[d]);
        num += (got - want) * (got - want);
        den += want * want;
        double e = fabs(got - want);
        if (!(e <= max_abs)) /* NaN counts as the largest */
          max_abs = isnan(e) ? INFINITY : e;
      }
      double e = fabs(got_lse - (m + log(sum)));
      if (!(e <= lse_err))
        lse_err = isnan(e) ? INFINITY : e;
    }
  }
  double rel = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
  if (isnan(rel))
    rel = INFINITY;

  int passed =
      set_up && rel <= OUT_TOLERANCE && lse_err <= LSE_TOLERANCE && empty_zero;
  printf("seed %llu: %lld sequences, %lld-page tables split after page %lld, "
         "pool of %lld shuffled pages: ",
         (unsigned long long)seed, (long long)batch, (long long)max_pages,
         (long long)split, (long long)pool);
  if (!set_up)
    printf("not run: mgpu* calls failed setting it up: FAIL\n");
  else if (launch_only)
    printf("ran, not checked\n");
  else
    printf("output rel L2 error %.3e, max abs error %.3e, lse max abs error "
           "%.3e%s: %s\n",
           rel, max_abs, lse_err, empty_zero ? "" : ", empty rows not zero",
           passed ? "PASS" : "FAIL");

  free(q), free(k), free(v), free(table), free(lens), free(prefix);
  free(suffix), free(order), free(out), free(lse), free(logits);
  return set_up && (launch_only || passed);
}

int main(int argc, char **argv) {
  uint64_t seed = 1;
  int launch_only = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--launch-only") == 0) {
      launch_only = 1;
    } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = strtoull(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: %s [--seed N] [--launch-only]\n", argv[0]);
      return 2;
    }
  }
  printf("split_decode: %d query heads over %d KV heads of %d, pages of %d, "
         "bf16, soft-cap %.0f, sinks\n",
         HEADS, KV_HEADS, DIM, PAGE, SOFT_CAP);
  /* One sequence, a batch with every edge length, a larger one. */
  const int64_t batches[] = {1, 8, 37};
  int ok = 1;
  for (int i = 0; i < 3; ++i)
    ok &= run_case(seed + (uint64_t)i, batches[i], launch_only);
  uint64_t errors = paged_attn_mgpu_error_count();
  if (errors) {
    printf("%llu mgpu* calls failed (their messages are on stderr)\n",
           (unsigned long long)errors);
    ok = 0;
  }
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
