//===- Generator.h - plausible decode inputs --------------------*- C++ -*-===//
//
// Writes modules with paged_attn.decode ops: mostly well-formed, in both
// forms, with shapes, element types, layouts, scales, strided layouts and
// memory spaces drawn to reach the verifier's edges and past them (zero,
// 2^31, 2^62, dynamic sizes; NaN and negative scales; misspelt attributes),
// and some text mutated token by token. The first line may carry
// `// fuzz: OPTIONS` for the GPU pipeline.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TEST_FUZZ_GENERATOR_H
#define PAGEDATTN_TEST_FUZZ_GENERATOR_H

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace paged_attn_fuzz {

/// Input `index` of the sequence for `seed`: the same on every machine and
/// independent of the inputs before it, so a run resumes anywhere.
/// `corpus` entries are mutated as well as generated ones.
std::string generateInput(uint64_t seed, uint64_t index,
                          const std::vector<std::string> &corpus);

/// Replaces, deletes, inserts or repeats a few tokens of `text`.
std::string mutateText(const std::string &text, std::mt19937_64 &rng);

} // namespace paged_attn_fuzz

#endif // PAGEDATTN_TEST_FUZZ_GENERATOR_H
