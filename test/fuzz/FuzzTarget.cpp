//===- FuzzTarget.cpp - the harness as a libFuzzer target -----------------===//
//
// Built with clang's -fsanitize=fuzzer (PAGED_ATTN_ENABLE_LIBFUZZER): the
// inputs are MLIR text; half of libFuzzer's mutations are replaced by the
// structured generator's inputs and token mutations. A finding of the
// harness (invalid IR after a pass, a silent pass failure, a module that
// does not survive printing) aborts, so libFuzzer keeps the input.
// PAGED_ATTN_FUZZ_PTX_FRACTION (default 0.05) is the share lowered to PTX.
// While known-failures.txt lists bugs, run with -fork=1 -ignore_crashes=1
// so that libFuzzer goes on past them.
//
//===----------------------------------------------------------------------===//

#include "Generator.h"
#include "Harness.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

using namespace paged_attn_fuzz;

static Harness *harness;
static double ptxFraction = 0.05;

extern "C" size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t maxSize);

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  harness = new Harness;
  if (const char *fraction = std::getenv("PAGED_ATTN_FUZZ_PTX_FRACTION"))
    ptxFraction = std::atof(fraction);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string input(reinterpret_cast<const char *>(data), size);
  bool ptx =
      double(std::hash<std::string>()(input) % 1000) < ptxFraction * 1000;
  Outcome outcome = harness->run(input, optionsOf(input), ptx);
  if (!outcome.findings.empty()) {
    const Finding &f = outcome.findings[0];
    std::fprintf(stderr, "paged-attn-fuzz: %s in %s: %s\n", f.kind.c_str(),
                 stageName(f.stage), f.message.c_str());
    std::abort();
  }
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size,
                                          size_t maxSize, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string text;
  switch (rng() % 4) {
  case 0:
    text = generateInput(seed, rng(), {});
    break;
  case 1:
    text = mutateText(std::string(reinterpret_cast<char *>(data), size), rng);
    break;
  default:
    return LLVMFuzzerMutate(data, size, maxSize);
  }
  size = std::min(text.size(), maxSize);
  std::memcpy(data, text.data(), size);
  return size;
}
