//===- DecodeStages.h - the named stages of a decode kernel -----*- C++ -*-===//
//
// Private to the PagedAttnToGPU conversion. Both decode kernels are built
// from these stages, in this order:
//
//   1. emitDecodeCTA      where the CTA and thread are; the chunk of the
//                         sequence its split covers;
//      emitEmptySplitShortcut  a split with no keys writes its empty
//                         partial and skips the rest;
//   2. loadPageEntry      page-table lookup of a token;
//   3. (kernel's own)     K/V rows into registers or shared memory;
//      dequantizeToF32    a row slice as f32 (fp8 codes as their values);
//      KVScales           an fp8 cache's scales;
//   4. applyScoreRules    the variants' score modifiers on the logits
//                         (ScoreModifiers: shared with the loops lowering);
//   5. OnlineSoftmax      the running max, sum and accumulators, their
//                         updates and merges (also the split merge kernel's);
//   6. emitMergeWarpsAndStore  the warps merged, out or the split partials
//                         written.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_PAGEDATTNTOGPU_DECODESTAGES_H
#define LIB_CONVERSION_PAGEDATTNTOGPU_DECODESTAGES_H

#include "KernelEmitter.h"

#include "PagedAttn/Conversion/ScoreModifiers.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

namespace mlir {
namespace paged_attn {

//===----------------------------------------------------------------------===//
// 1. The CTA and its chunk
//===----------------------------------------------------------------------===//

/// Where a decode kernel's CTA and thread are, and the tokens
/// [chunkBegin, chunkEnd) of the sequence its split covers. A multi-token
/// decode's CTA serves new queries from `firstQuery` on (null for a
/// single-token decode); its chunk covers the keys any of them sees.
struct DecodeCTA {
  Value tid, batch, split, kvHead, firstHead, firstQuery, warp, lane;
  Value seqLen, numSplits, chunkBegin, chunkEnd;
};

/// Row `rowInCTA` of a CTA's q (c.rowsPerCTA() rows, query-major): its new
/// query (clamped to L - 1, so that loads stay inside; null for a
/// single-token decode, whose rows are heads), its head, and whether it is
/// a real row (null where every row is: padding queries exist only when
/// queriesPerCTA does not divide L).
struct CTARow {
  Value query, head, valid;
};
CTARow getCTARow(KernelEmitter &e, const DecodeKernelConfig &c, Value firstHead,
                 Value firstQuery, Value rowInCTA);
/// The row of the split partials and index of out / lse a row has:
/// head, or query * num_heads + head.
Value getPartialRow(KernelEmitter &e, const DecodeKernelConfig &c,
                    const CTARow &row);
/// [batch, (query,) head] followed by `trailing`: where a row is in out
/// and the log-sum-exp.
SmallVector<Value> getResultIndex(Value batch, const CTARow &row,
                                  ArrayRef<Value> trailing);

/// The argument of decode kernel `func` that the Spec's ABI names `name`
/// (PagedAttn/Spec/KernelABI.h); null when the config has no such
/// parameter (a variant it lacks).
Value getDecodeKernelArg(gpu::GPUFuncOp func, const DecodeKernelConfig &c,
                         StringRef name);

/// The score rules of `c`'s variants, with their values from the kernel's
/// arguments and exp2 as ex2.approx.
ScoreModifiers getScoreRules(KernelEmitter &e, const DecodeKernelConfig &c,
                             gpu::GPUFuncOp func);

/// Emits DecodeCTA for `func` (decode kernel arguments): chunks are the
/// keys visible under `rules` split `num_splits` ways, or `split_chunk`
/// keys where that is more, rounded up to whole loop iterations
/// (`tokensPerIteration`) so only the last chunk has a partial one
/// (Spec's splitChunkLength).
DecodeCTA emitDecodeCTA(KernelEmitter &e, const DecodeKernelConfig &c,
                        gpu::GPUFuncOp func, const ScoreModifiers &rules);

/// A split CTA whose chunk is empty (a sequence's chunks past its end, as a
/// split plan for a ragged batch leaves many) writes what the whole kernel
/// would, zeros and a log-sum-exp of -inf for each of its rows, and nothing
/// else: it leaves its slot on the SM at once. Emits that as the then
/// branch of the returned scf.if and leaves the insertion point at the
/// start of its else branch, for the kernel's body; the kernel returns
/// after the if.
scf::IfOp emitEmptySplitShortcut(KernelEmitter &e, const DecodeKernelConfig &c,
                                 gpu::GPUFuncOp func, const DecodeCTA &cta);

//===----------------------------------------------------------------------===//
// 2-4. Page lookup, rows as f32, score rules
//===----------------------------------------------------------------------===//

/// The block-table entry (i32) of the page holding `token` of `batch`.
Value loadPageEntry(KernelEmitter &e, Value blockTable, Value batch,
                    Value token, int64_t pageSize);

/// fp8 codes (a vector of an even number of the cache's fp8 type or i8) as
/// f16, which holds them exactly: a pair per conversion instruction where
/// the strategy has them (fp8Conversion), else KVDequant's fp8ToF16 (the
/// loops lowering's arithmetic).
Value widenFp8ToF16(KernelEmitter &e, const DecodeKernelConfig &c, Value codes);
/// A K/V row slice as loaded from the cache, widened to f32: an fp8
/// cache's codes as their values (widenFp8ToF16), before their scales.
Value dequantizeToF32(KernelEmitter &e, const DecodeKernelConfig &c,
                      Value slice);

/// The dequantisation scales of an fp8 cache (KVDequant's loadKVScale): the
/// kernels fold K's into the logits and V's into the accumulators (each
/// kernel says how). Per tensor and per KV head they are the CTA's
/// constants, loaded once (`k`, `v`); per token each key's are loaded with
/// its page (`load`).
struct KVScales {
  Value kScales, vScales; // the kernel's arguments; null without fp8
  Value k, v;             // the CTA's scales; null per token or without fp8

  static KVScales get(KernelEmitter &e, const DecodeKernelConfig &c,
                      gpu::GPUFuncOp func, Value kvHead);
  bool perToken() const { return kScales && !k; }
  /// Key (page, slot)'s K and V scales (per token only).
  std::pair<Value, Value> load(KernelEmitter &e, const DecodeKernelConfig &c,
                               Value page, Value slot, Value kvHead) const;
};

/// The end of the keys row `row` sees (queryKeyEnd): the sequence's length
/// for a single-token decode.
Value getRowKeyEnd(KernelEmitter &e, const ScoreModifiers &rules,
                   const DecodeCTA &cta, const CTARow &row);
/// Whether row `row`, whose keys end at `keyEnd`, sees key `token` of the
/// CTA's chunk: before its key end, inside its window, and where the tree
/// mask allows. Null for a single-token decode, whose rows see the whole
/// chunk.
Value rowSeesKey(KernelEmitter &e, const ScoreModifiers &rules,
                 const DecodeCTA &cta, const CTARow &row, Value keyEnd,
                 Value token);

/// The score rules on a base-2 logit (scale * log2(e) * q.k, as the
/// kernels keep them) of the key `position` gives: converted to natural
/// units around the rules, and nothing emitted when there are none.
Value applyScoreRules(KernelEmitter &e, const ScoreModifiers &rules,
                      Value base2Logit,
                      function_ref<ScorePosition()> position);

//===----------------------------------------------------------------------===//
// 5. Online softmax
//===----------------------------------------------------------------------===//

/// The online softmax over base-2 logits, shared by both decode kernels and
/// the split merge kernel: its state and its log-sum-exp arithmetic.
class OnlineSoftmax {
public:
  /// Per row (query head, or head block): the running max and sum, and the
  /// accumulator registers, row by row in the order the kernel lays them
  /// out (f32 vectors or scalars).
  struct State {
    SmallVector<Value> max, sum, acc;

    SmallVector<Value> flatten() const;
    static State unflatten(ValueRange values, int64_t rows);
  };

  explicit OnlineSoftmax(KernelEmitter &e) : e(e) {}

  /// A reference point for exp2(x - ref) of a running max: the max, or 0
  /// where it is still -inf (nothing seen; avoids -inf - -inf).
  Value reference(Value max) { return e.safeMax(max); }
  /// exp2(x - ref): the weight of a logit, or of a state whose running max
  /// is x, against `ref`.
  Value weight(Value x, Value ref) { return e.exp2(e.fsub(x, ref)); }
  /// Whether a row has seen a key (its sum is positive).
  Value nonEmpty(Value sum) { return e.fgt(sum, e.f32Const(0.0)); }
  /// 1 / sum, or 0 for a row that saw no key (`nonEmpty`, when the caller
  /// has it already).
  Value inverseSum(Value sum);
  Value inverseSum(Value sum, Value nonEmpty);
  /// The row's log-sum-exp (base 2), ref + log2(sum); -inf where it saw no
  /// key.
  Value logSumExp(Value ref, Value sum, Value nonEmpty);
  /// A sink of logit `sink` (natural units) as a weight against `ref`:
  /// e^sink / 2^ref.
  Value sinkWeight(Value sink, Value ref);
  /// The factor that puts a sink of logit `sink` (natural units) into the
  /// denominator of a row normalised by its `sum` against `ref`:
  /// sum / (sum + e^sink / 2^ref); 0 for a row that saw no key.
  Value sinkFactor(Value sink, Value ref, Value sum);
  /// Merges `other` into `s` by log-sum-exp, row by row; each row has
  /// `accPerRow` accumulator values of `vecElems` lanes each.
  void merge(State &s, const State &other, int64_t accPerRow,
             int64_t vecElems);

private:
  KernelEmitter &e;
};

//===----------------------------------------------------------------------===//
// 6. The end of a decode kernel
//===----------------------------------------------------------------------===//

/// The values the end of a decode kernel works on.
struct DecodeEpilogue {
  /// f32 [num_warps][>= rows][head_dim]: each warp's accumulator.
  Value accSmem;
  /// f32 [2][num_warps][>= rows]: each warp's running max (base-2 logits)
  /// and sum.
  Value statSmem;
  Value tid, batch, split, firstHead, firstQuery, numSplits;
  Value out, partialOut, partialLse;
  /// The variants' per-head sink logits and log-sum-exp output (null
  /// without them).
  Value sinks, lse;
};

/// The epilogue's values for decode kernel `func`: its outputs (by the
/// Spec's names) and the warps' states in `accSmem` and `statSmem`.
DecodeEpilogue getDecodeEpilogue(gpu::GPUFuncOp func,
                                 const DecodeKernelConfig &c,
                                 const DecodeCTA &cta, Value accSmem,
                                 Value statSmem);

/// After a barrier that published every warp's state in shared memory:
/// merges the warps by log-sum-exp and writes the output itself when
/// unsplit (with the sinks in its denominator, and its natural log-sum-exp
/// where asked for), else this chunk's normalised partial output and its
/// log-sum-exp (base 2), which the merge kernel combines.
void emitMergeWarpsAndStore(KernelEmitter &e, const DecodeKernelConfig &c,
                            const DecodeEpilogue &ep);

} // namespace paged_attn
} // namespace mlir

#endif // LIB_CONVERSION_PAGEDATTNTOGPU_DECODESTAGES_H
