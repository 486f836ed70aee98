//===- Reference.cpp - float64 reference of paged decode ------------------===//

#include "PagedAttn/Testing/Reference.h"
#include "PagedAttn/Testing/Float16.h"
#include "PagedAttn/Testing/Float8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

using namespace paged_attn;

/// The row of cache element 0 of sequence b's token t at KV head kvh.
static int64_t cacheRow(const ReferenceProblem &p, int64_t b, int64_t t,
                        int64_t kvh) {
  int64_t page = p.blockTable[b * p.maxPages + t / p.pageSize];
  int64_t slot = t % p.pageSize;
  return p.hnd ? (page * p.numKVHeads + kvh) * p.pageSize + slot
               : (page * p.pageSize + slot) * p.numKVHeads + kvh;
}

/// The keys query i of sequence b may attend: [first, end), causal among
/// the new tokens and within the window (the tree mask aside).
static std::pair<int64_t, int64_t> queryKeys(const ReferenceProblem &p,
                                             int64_t b, int64_t i) {
  int64_t end = std::max<int64_t>(p.seqLens[b] - p.queryLen + 1 + i, 0);
  int64_t first = p.variants.window ? std::max<int64_t>(end - p.window, 0) : 0;
  return {first, end};
}

std::vector<double> paged_attn::referenceDecode(const ReferenceProblem &p,
                                                std::vector<double> *lse) {
  const int64_t l = p.queryLen;
  std::vector<double> out(p.batch * l * p.numHeads * p.headDim, 0.0);
  if (lse)
    lse->assign(p.batch * l * p.numHeads, 0.0);
  int64_t group = p.numHeads / p.numKVHeads;
  const DecodeVariants &v = p.variants;
  std::vector<double> logits, acc(p.headDim);
  std::vector<bool> visible;
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t len = p.seqLens[b];
    for (int64_t i = 0; i < l; ++i) {
      // Query i's keys: causal among the new tokens, then the window and
      // the tree mask.
      auto [first, end] = queryKeys(p, b, i);
      visible.assign(end, false);
      for (int64_t t = first; t < end; ++t) {
        int64_t j = t - (len - l);
        visible[t] =
            !v.treeMask || j < 0 || p.treeMask[(b * l + i) * l + j] != 0;
      }
      for (int64_t h = 0; h < p.numHeads; ++h) {
        int64_t kvh = h / group;
        int64_t rowIndex = (b * l + i) * p.numHeads + h;
        const double *q = &p.q[rowIndex * p.headDim];
        auto row = [&](int64_t t) {
          return cacheRow(p, b, t, kvh) * p.headDim;
        };
        logits.assign(end, 0.0);
        double max = -std::numeric_limits<double>::infinity();
        bool attended = false;
        for (int64_t t = first; t < end; ++t) {
          if (!visible[t])
            continue;
          const double *k = &p.kCache[row(t)];
          double dot = 0;
          for (int64_t d = 0; d < p.headDim; ++d)
            dot += q[d] * k[d];
          double s = p.scale * dot;
          if (v.softCap)
            s = p.softCap * std::tanh(s / p.softCap);
          if (v.alibi)
            s += p.alibiSlopes[h] * double(t - (end - 1));
          logits[t] = s;
          max = std::max(max, s);
          attended = true;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        double sum = 0;
        for (int64_t t = first; t < end; ++t) {
          if (!visible[t])
            continue;
          double w = std::exp(logits[t] - max);
          sum += w;
          const double *vrow = &p.vCache[row(t)];
          for (int64_t d = 0; d < p.headDim; ++d)
            acc[d] += w * vrow[d];
        }
        double denominator = sum;
        if (v.sinks && attended)
          denominator += std::exp(p.sinks[h] - max);
        double *o = &out[rowIndex * p.headDim];
        for (int64_t d = 0; d < p.headDim; ++d)
          o[d] = attended ? acc[d] / denominator : 0.0;
        if (lse)
          (*lse)[rowIndex] = attended
                                 ? max + std::log(sum)
                                 : -std::numeric_limits<double>::infinity();
      }
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

ReferenceProblem paged_attn::makeRandomProblem(const RandomProblemOptions &o) {
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  ReferenceProblem p;
  p.batch = static_cast<int64_t>(o.seqLens.size());
  p.numHeads = o.numHeads;
  p.numKVHeads = o.numKVHeads;
  p.headDim = o.headDim;
  p.pageSize = o.pageSize;
  p.hnd = o.hnd;
  p.scale = 1.0 / std::sqrt(double(o.headDim));
  p.seqLens = o.seqLens;
  p.maxPages = 1;
  int64_t usedPages = 0;
  for (int32_t l : o.seqLens) {
    int64_t pages = (l + o.pageSize - 1) / o.pageSize;
    p.maxPages = std::max(p.maxPages, pages);
    usedPages += pages;
  }
  p.numPages = usedPages + o.sparePages + 1;

  std::vector<int32_t> pool(p.numPages);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  p.blockTable.assign(p.batch * p.maxPages, -1);
  size_t next = 0;
  int32_t sharedPage = pool[next++];
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t pages = (o.seqLens[b] + o.pageSize - 1) / o.pageSize;
    for (int64_t j = 0; j < pages; ++j)
      p.blockTable[b * p.maxPages + j] =
          (o.sharePrefixPage && j == 0) ? sharedPage : pool[next++];
  }

  size_t cacheElems =
      size_t(p.numPages) * o.pageSize * o.numKVHeads * o.headDim;
  p.queryLen = o.queryLen;
  p.q.resize(size_t(p.batch) * o.queryLen * o.numHeads * o.headDim);
  p.kCache.resize(cacheElems);
  p.vCache.resize(cacheElems);
  for (auto *v : {&p.q, &p.kCache, &p.vCache})
    for (double &x : *v)
      x = uniform(rng);

  // The variants' values, as the f32 the kernels are given.
  p.variants = o.variants;
  p.window = o.window;
  p.softCap = float(o.softCap);
  if (o.variants.alibi)
    for (int64_t h = 0; h < o.numHeads; ++h)
      p.alibiSlopes.push_back(
          float(std::exp2(-8.0 * double(h + 1) / double(o.numHeads))));
  if (o.variants.sinks) {
    std::uniform_real_distribution<double> sink(-1.0, 5.0);
    for (int64_t h = 0; h < o.numHeads; ++h)
      p.sinks.push_back(float(sink(rng)));
  }
  if (o.variants.treeMask) {
    std::uniform_real_distribution<double> draw(0.0, 1.0);
    int64_t l = o.queryLen;
    p.treeMask.resize(size_t(p.batch) * l * l);
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t i = 0; i < l; ++i)
        for (int64_t j = 0; j < l; ++j)
          p.treeMask[(b * l + i) * l + j] =
              draw(rng) < (j < i ? 0.6 : j == i ? 0.9 : 0.5);
  }
  poisonUnattendedRows(p);
  return p;
}

/// NaN in every cache row no query attends: the slots past a sequence's
/// end, before its window, and of pages no sequence holds. The op does not
/// ask what they hold (a page reused since may hold anything), so a kernel
/// that reads them must not let them reach the output (0 * NaN is NaN).
void paged_attn::poisonUnattendedRows(ReferenceProblem &p) {
  int64_t rows = p.numPages * p.pageSize * p.numKVHeads;
  std::vector<bool> attended(rows, false);
  for (int64_t b = 0; b < p.batch; ++b) {
    // Query 0's window starts first; the tree mask hides keys, not rows.
    int64_t first = queryKeys(p, b, 0).first;
    for (int64_t t = first; t < p.seqLens[b]; ++t)
      for (int64_t kvh = 0; kvh < p.numKVHeads; ++kvh)
        attended[cacheRow(p, b, t, kvh)] = true;
  }
  double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t r = 0; r < rows; ++r) {
    if (attended[r])
      continue;
    for (auto *cache : {&p.kCache, &p.vCache})
      std::fill_n(cache->begin() + r * p.headDim, p.headDim, nan);
  }
}

std::vector<uint8_t> paged_attn::roundToDType(DType dtype,
                                              std::vector<double> &values) {
  size_t n = values.size();
  std::vector<uint8_t> bytes(n * dtypeBytes(dtype));
  for (size_t i = 0; i < n; ++i) {
    float f = static_cast<float>(values[i]);
    if (dtype == DType::F32) {
      std::memcpy(&bytes[i * 4], &f, 4);
      values[i] = f;
    } else {
      uint16_t h = dtype == DType::BF16 ? floatToBf16(f) : floatToF16(f);
      std::memcpy(&bytes[i * 2], &h, 2);
      values[i] = dtype == DType::BF16 ? bf16ToFloat(h) : f16ToFloat(h);
    }
  }
  return bytes;
}

std::vector<double> paged_attn::widenFromDType(DType dtype, const void *data,
                                               size_t n) {
  std::vector<double> out(n);
  const uint8_t *bytes = static_cast<const uint8_t *>(data);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::F32) {
      float f;
      std::memcpy(&f, bytes + i * 4, 4);
      out[i] = f;
    } else {
      uint16_t h;
      std::memcpy(&h, bytes + i * 2, 2);
      out[i] = dtype == DType::BF16 ? bf16ToFloat(h) : f16ToFloat(h);
    }
  }
  return out;
}

QuantizedCaches paged_attn::quantizeCaches(ReferenceProblem &p, KVQuant quant,
                                           uint64_t seed) {
  std::mt19937_64 rng(seed);
  double maxFinite = Fp8Format::of(quant.dtype).maxFinite();
  std::uniform_real_distribution<double> scaleDist(1.0 / maxFinite,
                                                   4.0 / maxFinite);
  // Per-token scales spread over 2^-10 to 2^10 whatever the format: a
  // cache's rows may be scaled far apart, and a kernel must not depend on
  // them being near 1 / the largest code.
  std::uniform_real_distribution<double> logScale(-10.0, 10.0);
  auto drawScale = [&] {
    if (quant.scale == KVScaleKind::Token)
      return std::exp2(logScale(rng));
    return scaleDist(rng);
  };
  int64_t rows = p.numPages * p.pageSize * p.numKVHeads;
  int64_t scales = quant.scale == KVScaleKind::Tensor ? 1
                   : quant.scale == KVScaleKind::Head ? p.numKVHeads
                                                      : rows;
  // The scale of cache row r (the layout's order: KV head r % Hkv under
  // nhd, (r / page) % Hkv under hnd).
  auto scaleIndex = [&](int64_t r) -> int64_t {
    if (quant.scale == KVScaleKind::Tensor)
      return 0;
    if (quant.scale == KVScaleKind::Head)
      return p.hnd ? (r / p.pageSize) % p.numKVHeads : r % p.numKVHeads;
    return r;
  };
  QuantizedCaches q;
  q.quant = quant;
  auto quantize = [&](std::vector<double> &values, std::vector<uint8_t> &codes,
                      std::vector<float> &scaleValues) {
    scaleValues.resize(scales);
    for (float &s : scaleValues)
      s = float(drawScale());
    codes.resize(values.size());
    for (int64_t r = 0; r < rows; ++r) {
      double scale = scaleValues[scaleIndex(r)];
      for (int64_t d = 0; d < p.headDim; ++d) {
        size_t i = size_t(r * p.headDim + d);
        codes[i] = doubleToFp8(values[i] / scale, quant.dtype,
                               /*saturate=*/true);
        values[i] = fp8ToDouble(codes[i], quant.dtype) * scale;
      }
    }
  };
  quantize(p.kCache, q.k, q.kScale);
  quantize(p.vCache, q.v, q.vScale);
  return q;
}
