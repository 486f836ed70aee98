//===- ReferenceTest.cpp - the reference's random problems ----------------===//
//---------===//
//
// The random problems every numerical test runs on hold NaN in the cache
// rows no query attends, so that a kernel reading them (past a sequence's
// end, before its window) without masking them fails its check.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Testing/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

using namespace paged_attn;

namespace {

struct PoisonCase {
  bool hnd, window, sharePrefixPage;
  int64_t queryLen;
};

class ReferencePoisonTest : public ::testing::TestWithParam<PoisonCase> {};

TEST_P(ReferencePoisonTest, OnlyUnattendedRowsAreNaN) {
  PoisonCase c = GetParam();
  RandomProblemOptions o;
  o.numHeads = 4;
  o.numKVHeads = 2;
  o.headDim = 8;
  o.pageSize = 16;
  o.hnd = c.hnd;
  o.seqLens = {c.sharePrefixPage ? 3 : 0, 5, 40, 33, 16};
  o.sharePrefixPage = c.sharePrefixPage;
  o.variants.window = c.window;
  o.window = 20;
  o.queryLen = c.queryLen;
  o.seed = 7;
  ReferenceProblem p = makeRandomProblem(o);

  // The attended rows, from the op's definition: keys from query 0's
  // window start (the earliest) to the sequence's end, at every KV head.
  std::set<int64_t> attended;
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t len = p.seqLens[b];
    int64_t first =
        c.window ? std::max<int64_t>(len - c.queryLen + 1 - o.window, 0) : 0;
    for (int64_t t = first; t < len; ++t) {
      int64_t page = p.blockTable[b * p.maxPages + t / o.pageSize];
      int64_t slot = t % o.pageSize;
      for (int64_t h = 0; h < o.numKVHeads; ++h)
        attended.insert(c.hnd ? (page * o.numKVHeads + h) * o.pageSize + slot
                              : (page * o.pageSize + slot) * o.numKVHeads + h);
    }
  }
  int64_t rows = p.numPages * o.pageSize * o.numKVHeads;
  for (int64_t r = 0; r < rows; ++r)
    for (const auto *cache : {&p.kCache, &p.vCache})
      for (int64_t d = 0; d < o.headDim; ++d)
        ASSERT_EQ(std::isnan((*cache)[r * o.headDim + d]), !attended.count(r))
            << "row " << r << " element " << d;

  // The reference itself reads attended rows only.
  for (double x : referenceDecode(p))
    ASSERT_TRUE(std::isfinite(x));
}

INSTANTIATE_TEST_SUITE_P(Layouts, ReferencePoisonTest,
                         ::testing::Values(PoisonCase{false, false, false, 1},
                                           PoisonCase{true, false, false, 1},
                                           PoisonCase{false, true, false, 1},
                                           PoisonCase{true, true, true, 1},
                                           PoisonCase{false, true, false, 3},
                                           PoisonCase{true, false, true, 4}));

} // namespace
