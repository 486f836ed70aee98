//===- Reference.cpp - float64 reference of paged decode ------------------===//

#include "PagedAttn/Runtime/Reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace paged_attn;

std::vector<double> paged_attn::referenceDecode(const ReferenceProblem &p) {
  std::vector<double> out(p.batch * p.numHeads * p.headDim, 0.0);
  int64_t group = p.numHeads / p.numKVHeads;
  std::vector<double> logits, acc(p.headDim);
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t len = p.seqLens[b];
    for (int64_t h = 0; h < p.numHeads; ++h) {
      int64_t kvh = h / group;
      const double *q = &p.q[(b * p.numHeads + h) * p.headDim];
      auto row = [&](int64_t t) -> int64_t {
        int64_t page = p.blockTable[b * p.maxPages + t / p.pageSize];
        int64_t slot = t % p.pageSize;
        int64_t r = p.hnd ? (page * p.numKVHeads + kvh) * p.pageSize + slot
                          : (page * p.pageSize + slot) * p.numKVHeads + kvh;
        return r * p.headDim;
      };
      logits.assign(len, 0.0);
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t t = 0; t < len; ++t) {
        const double *k = &p.kCache[row(t)];
        double dot = 0;
        for (int64_t d = 0; d < p.headDim; ++d)
          dot += q[d] * k[d];
        logits[t] = p.scale * dot;
        max = std::max(max, logits[t]);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double sum = 0;
      for (int64_t t = 0; t < len; ++t) {
        double w = std::exp(logits[t] - max);
        sum += w;
        const double *v = &p.vCache[row(t)];
        for (int64_t d = 0; d < p.headDim; ++d)
          acc[d] += w * v[d];
      }
      double *o = &out[(b * p.numHeads + h) * p.headDim];
      for (int64_t d = 0; d < p.headDim; ++d)
        o[d] = len > 0 ? acc[d] / sum : 0.0;
    }
  }
  return out;
}

double paged_attn::relativeError(const std::vector<double> &a,
                                 const std::vector<double> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (a.size() != b.size())
    return std::numeric_limits<double>::infinity();
  if (den == 0)
    return num == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

double paged_attn::maxAbsError(const std::vector<double> &a,
                               const std::vector<double> &b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    double d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) // NaN counts as the largest error
      m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
  }
  return m;
}
