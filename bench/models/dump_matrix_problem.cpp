//===- dump_matrix_problem.cpp - a GPU matrix case's data, on the host -----===//
//
// Draws the inputs gpu-decode-test gives one fp8 matrix case (as
// Problem::create does: makeRandomProblem, q rounded to f16, the caches
// quantised by quantizeCaches) and writes them as raw little-endian arrays
// for bench/models/fp8_token_variants_model.py. Only the host half of the
// testing library is used (lib/Testing/Reference.cpp), so it builds without
// CUDA:
//
//   g++ -O2 -std=c++17 -I include bench/models/dump_matrix_problem.cpp \
//       lib/Testing/Reference.cpp -o /tmp/dump_matrix_problem
//   /tmp/dump_matrix_problem SEED OUTDIR [WINDOW]
//
// The config is the one fixed below: h8_kv2_d128_p128_f16_nhd_w4_
// f8e4m3fn_token_win_cap_alibi_sinks_lse (the matrix's seed for it is the
// config's running number over the sets: 2351 with every set loaded; its
// lengths {0, 1, 129, 128, 127, 37 + seed % 1500, 517 + seed % 701,
// 3 * 128 + 1 + seed % 29} as edgeLengths and windowsFor append them).
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Testing/Float16.h"
#include "PagedAttn/Testing/Reference.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace paged_attn;

// The one symbol of lib/Spec the host reference needs.
size_t paged_attn::dtypeBytes(DType dtype) {
  switch (dtype) {
  case DType::F32:
  case DType::I32:
    return 4;
  case DType::I64:
    return 8;
  case DType::I8:
  case DType::F8E4M3FN:
  case DType::F8E5M2:
    return 1;
  default:
    return 2;
  }
}

template <typename T>
static void write(const std::string &dir, const char *name,
                  const std::vector<T> &v) {
  std::string path = dir + "/" + name;
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fwrite(v.data(), sizeof(T), v.size(), f);
  std::fclose(f);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SEED OUTDIR [WINDOW]\n", argv[0]);
    return 2;
  }
  uint64_t seed = std::strtoull(argv[1], nullptr, 10);
  std::string dir = argv[2];
  const int64_t page = 128;
  int64_t window = argc > 3 ? std::atoll(argv[3]) : 3 * page + 1 + seed % 29;

  RandomProblemOptions o;
  o.numHeads = 8;
  o.numKVHeads = 2;
  o.headDim = 128;
  o.pageSize = page;
  o.hnd = false;
  o.seqLens = {0, 1, int32_t(page + 1), int32_t(page), int32_t(page - 1),
               int32_t(37 + seed % 1500), int32_t(517 + seed % 701),
               int32_t(3 * page + 1 + seed % 29)};
  o.seed = seed;
  o.variants.window = o.variants.softCap = o.variants.alibi =
      o.variants.sinks = o.variants.lse = true;
  o.window = window;
  o.softCap = 0.3;
  ReferenceProblem p = makeRandomProblem(o);
  roundToDType(DType::F16, p.q);
  KVQuant quant{DType::F8E4M3FN, KVScaleKind::Token};
  QuantizedCaches qc = quantizeCaches(p, quant, seed ^ 0x5851f42d4c957f2dull);

  std::vector<double> lse;
  std::vector<double> out = referenceDecode(p, &lse);

  write(dir, "q.f64", p.q);
  write(dir, "k.f64", p.kCache);
  write(dir, "v.f64", p.vCache);
  write(dir, "k_codes.u8", qc.k);
  write(dir, "v_codes.u8", qc.v);
  write(dir, "k_scale.f32", qc.kScale);
  write(dir, "v_scale.f32", qc.vScale);
  write(dir, "block_table.i32", p.blockTable);
  write(dir, "seq_lens.i32", p.seqLens);
  write(dir, "alibi.f64", p.alibiSlopes);
  write(dir, "sinks.f64", p.sinks);
  write(dir, "ref_out.f64", out);
  write(dir, "ref_lse.f64", lse);
  std::string meta = dir + "/meta.txt";
  FILE *f = std::fopen(meta.c_str(), "w");
  std::fprintf(f,
               "batch %lld\nheads %lld\nkv_heads %lld\nhead_dim %lld\n"
               "page %lld\nnum_pages %lld\nmax_pages %lld\nwindow %lld\n"
               "soft_cap %.17g\nscale %.17g\n",
               (long long)p.batch, (long long)p.numHeads,
               (long long)p.numKVHeads, (long long)p.headDim,
               (long long)p.pageSize, (long long)p.numPages,
               (long long)p.maxPages, (long long)p.window, p.softCap,
               p.scale);
  std::fclose(f);
  return 0;
}
