//===- Reference.h - float64 reference of paged decode ----------*- C++ -*-===//
//
// What the kernels are checked against: the decode in float64 on the host,
// random problems to run it on, and dtype rounding. Test code only: it is
// part of the testing library, not of the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TESTING_REFERENCE_H
#define PAGEDATTN_TESTING_REFERENCE_H

#include "PagedAttn/Spec/DecodeSpec.h"

#include <cstdint>
#include <vector>

namespace paged_attn {

/// Dense host copies of the decode inputs, widened to double. Caches are
/// [num_pages, page, num_kv_heads, head_dim] (nhd) or
/// [num_pages, num_kv_heads, page, head_dim] (hnd), row-major.
struct ReferenceProblem {
  int64_t batch = 0, numHeads = 0, numKVHeads = 0, headDim = 0;
  int64_t pageSize = 0, numPages = 0, maxPages = 0;
  bool hnd = false;
  double scale = 0;
  /// New query tokens per sequence (L, a multi-token decode's; the last L
  /// keys of each sequence are theirs).
  int64_t queryLen = 1;
  /// q: [batch, L, num_heads, head_dim] ([batch, num_heads, head_dim] for
  /// L = 1).
  std::vector<double> q, kCache, vCache;
  std::vector<int32_t> blockTable;       // [batch, max_pages]
  std::vector<int32_t> seqLens;          // [batch]
  /// The variants (DecodeVariants says which are on) and their values:
  /// the window's length, the cap, the slopes and sinks ([num_heads]).
  DecodeVariants variants;
  int64_t window = 0;
  double softCap = 0;
  std::vector<double> alibiSlopes, sinks;
  /// The tree mask [batch, L, L] (variants.treeMask): query i sees new
  /// token j where j <= i and the entry is nonzero.
  std::vector<uint8_t> treeMask;
};

/// What a random problem looks like.
struct RandomProblemOptions {
  int64_t numHeads = 0, numKVHeads = 0, headDim = 0, pageSize = 0;
  bool hnd = false;
  std::vector<int32_t> seqLens;
  /// Pages in the pool beyond those the sequences use.
  int64_t sparePages = 3;
  /// Every sequence's first page is the same physical page (prefix sharing).
  bool sharePrefixPage = false;
  uint64_t seed = 1;
  /// The variants to draw values for: the window and cap are these; the
  /// slopes are ALiBi's (2^(-8 (h + 1) / num_heads)) and the sinks uniform
  /// in [-1, 5) (a weight of 0.4 to 150 against about one per key).
  DecodeVariants variants;
  int64_t window = 0;
  double softCap = 0;
  /// New query tokens per sequence. The tree mask (variants.treeMask) is
  /// drawn: entries below the diagonal set with probability 0.6, the
  /// diagonal with 0.9, and those above it (which the op ignores) too.
  int64_t queryLen = 1;
};

/// Elements uniform in [-1, 1); logical pages take physical pages of the
/// pool in a shuffled order; unused block-table entries hold -1; scale is
/// 1/sqrt(head_dim). Cache rows no query attends hold NaN
/// (poisonUnattendedRows).
ReferenceProblem makeRandomProblem(const RandomProblemOptions &options);

/// Sets every cache row of `p` that no query attends to NaN: the slots
/// past each sequence's end, before its window, and of unheld pages.
void poisonUnattendedRows(ReferenceProblem &p);

/// A problem's caches as a quantised decode reads them: fp8 codes in the
/// caches' layout and f32 scales (one, one per KV head, or one per cache
/// row: [num_pages, page, num_kv_heads], or [num_pages, num_kv_heads, page]
/// for hnd).
struct QuantizedCaches {
  KVQuant quant;
  std::vector<uint8_t> k, v;
  std::vector<float> kScale, vScale;
};

/// Quantises `p`'s caches: draws K's and V's scales uniform in [1, 4) /
/// the format's largest finite value (per token: log-uniform in 2^-10 to
/// 2^10, so rows are scaled far apart and codes may underflow), encodes each
/// element divided by its scale (rounded to nearest even, saturating), and
/// replaces p.kCache and p.vCache with the values the codes stand for (code
/// times scale), so that referenceDecode gives the quantised decode's exact
/// result.
QuantizedCaches quantizeCaches(ReferenceProblem &p, KVQuant quant,
                               uint64_t seed);

/// Rounds `values` to `dtype` in place (what a kernel reading them sees)
/// and returns their stored bytes.
std::vector<uint8_t> roundToDType(DType dtype, std::vector<double> &values);

/// Widens stored `dtype` elements to double.
std::vector<double> widenFromDType(DType dtype, const void *data, size_t n);

/// out[b, i, h, :] = softmax(scale * q . K^T) . V in float64 over the keys
/// new query i of sequence b sees (causal among the L new tokens, the tree
/// mask), with the problem's variants as the op defines them; zeros for a
/// query with no attended key. Returns [batch, L, num_heads, head_dim];
/// `lse`, when given, receives the natural log-sum-exp [batch, L,
/// num_heads] (-inf where no key is attended).
std::vector<double> referenceDecode(const ReferenceProblem &p,
                                    std::vector<double> *lse = nullptr);

/// ||a - b|| / ||b|| (0 when both are zero).
double relativeError(const std::vector<double> &a,
                     const std::vector<double> &b);
/// max |a - b|.
double maxAbsError(const std::vector<double> &a, const std::vector<double> &b);

} // namespace paged_attn

#endif // PAGEDATTN_TESTING_REFERENCE_H
