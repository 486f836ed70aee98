//===- Generator.cpp - random but plausible paged_attn.decode inputs ------===//

#include "Generator.h"

#include <algorithm>
#include <cctype>
#include <climits>

using namespace paged_attn_fuzz;

namespace {

using Rng = std::mt19937_64;
constexpr int64_t kDynamic = INT64_MIN;

bool chance(Rng &rng, double p) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < p;
}

size_t below(Rng &rng, size_t n) {
  return n ? std::uniform_int_distribution<size_t>(0, n - 1)(rng) : 0;
}

template <typename T> const T &pick(Rng &rng, const std::vector<T> &v) {
  return v[below(rng, v.size())];
}

/// Sizes at and past the edges the verifier and the lowerings reason about.
int64_t edgeSize(Rng &rng) {
  static const std::vector<int64_t> sizes = {
      0,         1,         2,         3,         7,
      15,        17,        255,       1000,      4096,
      65535,     65536,     INT32_MAX, 1ll << 31, 1ll << 32,
      1ll << 40, 1ll << 61, 1ll << 62, INT64_MAX};
  return pick(rng, sizes);
}

std::string dimText(int64_t d) {
  return d == kDynamic ? "?" : std::to_string(d);
}

/// One decode op's shapes and element type.
struct Config {
  std::string elem = "bf16";
  int64_t batch = kDynamic, heads = 32, kvHeads = 8, headDim = 128,
          pageSize = 16, pages = kDynamic, maxPages = kDynamic;
  bool hnd = false;
};

Config plausibleConfig(Rng &rng) {
  Config c;
  static const std::vector<std::string> common = {"f16", "bf16", "f32"};
  static const std::vector<std::string> odd = {
      "f64",      "i32",       "i64",          "i8",   "index",
      "f8E4M3FN", "f8E5M2",    "f8E4M3FNUZ",   "tf32", "complex<f32>",
      "i1",       "f8E8M0FNU", "vector<4xf16>"};
  c.elem = chance(rng, 0.9) ? pick(rng, common) : pick(rng, odd);
  int64_t group = pick<int64_t>(rng, {1, 2, 4, 7, 8, 16});
  c.kvHeads = pick<int64_t>(rng, {1, 2, 4, 8});
  c.heads = c.kvHeads * group;
  c.headDim = pick<int64_t>(rng, {16, 32, 64, 80, 96, 128, 256});
  c.pageSize = pick<int64_t>(rng, {1, 8, 16, 32, 128});
  c.batch = chance(rng, 0.6) ? kDynamic : pick<int64_t>(rng, {1, 2, 4, 33});
  c.pages = chance(rng, 0.7) ? kDynamic : pick<int64_t>(rng, {1, 16, 100});
  c.maxPages = chance(rng, 0.7) ? kDynamic : pick<int64_t>(rng, {1, 7, 64});
  c.hnd = chance(rng, 0.5);
  // Now and then a size at an edge, or dynamic where it must be static.
  for (int64_t *d : {&c.batch, &c.heads, &c.kvHeads, &c.headDim, &c.pageSize,
                     &c.pages, &c.maxPages})
    if (chance(rng, 0.06))
      *d = chance(rng, 0.2) ? kDynamic : edgeSize(rng);
  return c;
}

using Dims = std::vector<int64_t>;

std::string shapeText(const Dims &dims) {
  std::string s;
  for (int64_t d : dims)
    s += dimText(d) + "x";
  return s;
}

/// A memref layout for `dims`: mostly none, else strided (contiguous,
/// padded, dynamic or with a non-unit innermost stride) or a non-strided
/// affine map.
std::string memrefLayout(Rng &rng, const Dims &dims) {
  double r = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (r < 0.78 || dims.empty())
    return "";
  size_t rank = dims.size();
  if (r < 0.97) {
    std::vector<std::string> strides(rank);
    int64_t running = 1;
    bool dynamic = chance(rng, 0.3);
    int64_t pad = chance(rng, 0.5) ? 0 : pick<int64_t>(rng, {1, 3, 8, 64});
    for (size_t i = rank; i-- > 0;) {
      if (i + 1 == rank) {
        strides[i] =
            chance(rng, 0.9) ? "1" : pick<std::string>(rng, {"2", "?"});
        continue;
      }
      int64_t inner = dims[i + 1];
      if (dynamic || running == kDynamic || inner == kDynamic) {
        strides[i] = "?";
        running = kDynamic;
        continue;
      }
      // Strides past int64 saturate: the verifier and the parser see them.
      int64_t next;
      if (__builtin_mul_overflow(running, inner, &next) ||
          (i + 2 == rank && __builtin_add_overflow(next, pad, &next)))
        next = INT64_MAX;
      running = next;
      strides[i] = std::to_string(next);
    }
    std::string text = ", strided<[";
    for (size_t i = 0; i < rank; ++i)
      text += (i ? ", " : "") + strides[i];
    text += "]";
    if (chance(rng, 0.5))
      text +=
          ", offset: " + pick<std::string>(rng, {"?", "0", "8", "3", "1024"});
    return text + ">";
  }
  std::string map = ", affine_map<(";
  for (size_t i = 0; i < rank; ++i)
    map += (i ? ", d" : "d") + std::to_string(i);
  map += ") -> (d0 floordiv 2";
  for (size_t i = 1; i < rank; ++i)
    map += ", d" + std::to_string(i);
  return map + ")>";
}

std::string memorySpace(Rng &rng) {
  static const std::vector<std::string> spaces = {
      "1",
      "3",
      "5",
      "#gpu.address_space<global>",
      "#gpu.address_space<workgroup>",
      "#gpu.address_space<private>",
      "7 : i64",
      "\"host\""};
  return ", " + pick(rng, spaces);
}

/// The types of one op's operands, built from a Config and then perturbed.
struct OpTypes {
  bool tensor = true;
  std::string q, k, v, bt, sl, out;
};

std::string shaped(bool tensor, const Dims &dims, const std::string &elem,
                   const std::string &suffix) {
  return std::string(tensor ? "tensor<" : "memref<") + shapeText(dims) + elem +
         suffix + ">";
}

/// Drops or adds a dimension, or changes one.
void perturbDims(Rng &rng, Dims &dims) {
  switch (below(rng, 3)) {
  case 0:
    if (!dims.empty())
      dims.erase(dims.begin() + below(rng, dims.size()));
    break;
  case 1:
    dims.insert(dims.begin() + below(rng, dims.size() + 1),
                pick<int64_t>(rng, {1, 4, kDynamic}));
    break;
  default:
    if (!dims.empty())
      dims[below(rng, dims.size())] =
          chance(rng, 0.3) ? kDynamic : edgeSize(rng);
  }
}

OpTypes opTypes(Rng &rng, const Config &c, bool tensor) {
  Dims q = {c.batch, c.heads, c.headDim};
  Dims cache = c.hnd ? Dims{c.pages, c.kvHeads, c.pageSize, c.headDim}
                     : Dims{c.pages, c.pageSize, c.kvHeads, c.headDim};
  Dims v = cache, out = q, bt = {c.batch, c.maxPages}, sl = {c.batch};
  std::string kElem = c.elem, vElem = c.elem, outElem = c.elem;
  std::string btElem = "i32", slElem = "i32";
  // Operands that disagree with each other.
  if (chance(rng, 0.03))
    perturbDims(rng, v);
  if (chance(rng, 0.03))
    perturbDims(rng, out);
  if (chance(rng, 0.03))
    perturbDims(rng, chance(rng, 0.5) ? bt : sl);
  if (chance(rng, 0.03))
    perturbDims(rng, chance(rng, 0.5) ? q : cache);
  if (chance(rng, 0.02))
    (chance(rng, 0.5) ? kElem : outElem) =
        pick<std::string>(rng, {"f16", "bf16", "f32"});
  if (chance(rng, 0.02))
    (chance(rng, 0.5) ? btElem : slElem) =
        pick<std::string>(rng, {"i64", "index", "i16", "f32"});

  OpTypes t;
  t.tensor = tensor;
  bool space = !tensor && chance(rng, 0.08);
  std::string sharedSpace = space ? memorySpace(rng) : "";
  auto suffix = [&](const Dims &dims) {
    if (tensor)
      return chance(rng, 0.01)
                 ? std::string(", ") + "#gpu.address_space<global>"
                 : std::string();
    std::string layout = memrefLayout(rng, dims);
    // Mostly one memory space for all operands, now and then per operand.
    std::string ms = space && chance(rng, 0.2) ? memorySpace(rng) : sharedSpace;
    return layout + ms;
  };
  // A strided layout needs a layout, so a memory space alone still works:
  // memref<4xf32, 1>.
  t.q = shaped(tensor, q, c.elem, suffix(q));
  t.k = shaped(tensor, cache, kElem, suffix(cache));
  t.v = shaped(tensor, v, vElem, suffix(v));
  t.bt = shaped(tensor, bt, btElem, suffix(bt));
  t.sl = shaped(tensor, sl, slElem, suffix(sl));
  t.out = shaped(tensor, out, outElem, suffix(out));
  // Now and then one operand of the other kind.
  if (chance(rng, 0.02)) {
    std::string *which = pick<std::string *>(rng, {&t.q, &t.k, &t.bt});
    *which =
        tensor ? shaped(false, q, c.elem, "") : shaped(true, q, c.elem, "");
  }
  return t;
}

std::string scaleText(Rng &rng) {
  static const std::vector<std::string> values = {
      "0.0883883",  "0.125",      "0.5",        "1.0",
      "1.0e-30",    "1.0e-45",    "3.4e38",     "1.0e38",
      "0.0",        "-0.0",       "-1.0",       "0x7FC00000",
      "0x7F800000", "0xFF800000", "0x00000001", "0x7F7FFFFF"};
  std::string value = pick(rng, values);
  double r = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (r < 0.9)
    return value + " : f32";
  if (r < 0.94)
    return "0.5 : f64";
  if (r < 0.97)
    return "1 : i32";
  return pick<std::string>(rng, {"\"0.5\"", "0.5 : f16", "[0.5 : f32]"});
}

std::string attributes(Rng &rng, const Config &c) {
  std::vector<std::string> attrs;
  if (c.hnd || chance(rng, 0.4))
    attrs.push_back(std::string("layout = #paged_attn.kv_layout<") +
                    (c.hnd ? "hnd" : "nhd") + ">");
  if (chance(rng, 0.5))
    attrs.push_back("scale = " + scaleText(rng));
  if (chance(rng, 0.03)) {
    static const std::vector<std::string> wrong = {
        "layuot = #paged_attn.kv_layout<hnd>",
        "layout = #paged_attn.kv_layout<hdn>",
        "layout = \"nhd\"",
        "layout = 1 : i32",
        "Scale = 0.5 : f32",
        "scale_ = 0.5 : f32",
        "foo = unit",
        "layout = #paged_attn.kv_layout<nhd>, layout = "
        "#paged_attn.kv_layout<hnd>"};
    attrs.push_back(pick(rng, wrong));
  }
  if (attrs.empty())
    return "";
  std::string text = " {";
  for (size_t i = 0; i < attrs.size(); ++i)
    text += (i ? ", " : "") + attrs[i];
  return text + "}";
}

/// The op, reading `q` and writing `out` (memref) or defining `result`.
std::string decodeOp(Rng &rng, const Config &c, const OpTypes &t,
                     const std::string &q, const std::string &out,
                     const std::string &result) {
  bool tensor = t.tensor;
  // Now and then the wrong form: outs on the tensor form, a result on the
  // memref form, or neither.
  bool withOuts = !tensor, withResult = tensor;
  if (chance(rng, 0.02))
    withOuts = !withOuts;
  if (chance(rng, 0.02))
    withResult = !withResult;
  std::string text = "  ";
  if (withResult)
    text += result + " = ";
  text += "paged_attn.decode " + q + ", %k, %v, %bt, %sl";
  if (withOuts)
    text += " outs(" + out + " : " + t.out + ")";
  text += attributes(rng, c);
  text += " : " + t.q + ", " + t.k + ", " + t.v + ", " + t.bt + ", " + t.sl;
  if (withResult)
    text += " -> " + t.out;
  return text + "\n";
}

std::string argsText(const OpTypes &t) {
  std::string args = "%q: " + t.q + ", %k: " + t.k + ", %v: " + t.v +
                     ", %bt: " + t.bt + ", %sl: " + t.sl;
  if (!t.tensor)
    args += ", %o: " + t.out;
  return args;
}

/// One function around one or two decode ops: plain, chained (the first
/// op's output is the second's query), or in an scf.for loop.
std::string function(Rng &rng, const std::string &name) {
  Config c = plausibleConfig(rng);
  bool tensor = chance(rng, 0.5);
  OpTypes t = opTypes(rng, c, tensor);
  std::string text = "func.func @" + name + "(" + argsText(t) + ")";
  if (tensor)
    text += " -> " + t.out;
  text += " {\n";
  double shape = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (shape < 0.85) {
    text += decodeOp(rng, c, t, "%q", "%o", "%r");
  } else if (shape < 0.93) {
    // Chained: the output of the first op is the query of the second (for
    // memrefs, q aliases out).
    text += decodeOp(rng, c, t, "%q", "%o", "%r0");
    text += decodeOp(rng, c, t, tensor ? "%r0" : "%o", "%o", "%r");
  } else {
    text += "  %c0 = arith.constant 0 : index\n"
            "  %c1 = arith.constant 1 : index\n"
            "  %n = arith.constant " +
            std::to_string(pick<int64_t>(rng, {0, 1, 3})) + " : index\n";
    if (tensor) {
      text += "  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %q) "
              "-> (" +
              t.q + ") {\n";
      text += "  " + decodeOp(rng, c, t, "%acc", "%o", "%d");
      text += "    scf.yield %d : " + t.out + "\n  }\n";
    } else {
      text += "  scf.for %i = %c0 to %n step %c1 {\n";
      text += "  " + decodeOp(rng, c, t, "%q", "%o", "%r");
      text += "  }\n";
    }
  }
  text += tensor ? "  return %r : " + t.out + "\n}\n" : "  return\n}\n";
  return text;
}

/// A `// fuzz:` line of paged-attn-to-ptx options, mostly valid.
std::string optionsLine(Rng &rng) {
  if (chance(rng, 0.5))
    return "";
  struct Choice {
    const char *name;
    std::vector<std::string> valid, invalid;
  };
  static const std::vector<Choice> choices = {
      {"chip",
       {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"},
       {"sm_70", "sm_100", "bogus"}},
      {"num-warps", {"1", "2", "4", "8", "16", "32"}, {"0", "33", "-1"}},
      {"tokens-per-lane-group", {"0", "1", "2", "4", "16"}, {"17", "-1"}},
      {"max-heads-per-cta", {"0", "1", "2", "4", "16", "256"}, {"257", "-1"}},
      {"prefetch-page-table", {"auto", "on", "off"}, {"sometimes"}},
      {"min-ctas-per-sm", {"0", "1", "2", "4"}, {"33"}},
      {"tensor-cores", {"auto", "on", "off"}, {"yes"}},
      {"kv-stages", {"2", "3", "4"}, {"1", "5"}},
      {"l2-prefetch", {"0", "64", "128", "256"}, {"100"}},
      {"num-splits", {"1", "2", "3", "8"}, {"0", "-1", "65536", "2147483648"}},
      {"opt-level", {"0", "1", "2", "3"}, {"4"}},
  };
  std::string line = "// fuzz:";
  for (const Choice &c : choices) {
    if (!chance(rng, 0.3))
      continue;
    bool bad = chance(rng, 0.05);
    line += std::string(" ") + c.name + "=" +
            (bad ? pick(rng, c.invalid) : pick(rng, c.valid));
  }
  return line + "\n";
}

bool isWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
}

std::vector<std::string> tokenize(const std::string &text) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    if (isWordChar(text[i]))
      while (i < text.size() && isWordChar(text[i]))
        ++i;
    else if (std::isspace(static_cast<unsigned char>(text[i])))
      while (i < text.size() &&
             std::isspace(static_cast<unsigned char>(text[i])))
        ++i;
    else
      ++i;
    tokens.push_back(text.substr(start, i - start));
  }
  return tokens;
}

const std::vector<std::string> &dictionary() {
  static const std::vector<std::string> words = {
      "paged_attn.decode",
      "outs",
      "(",
      ")",
      "{",
      "}",
      "<",
      ">",
      ":",
      ",",
      "?",
      "x",
      "->",
      "%q",
      "%k",
      "%o",
      "%r",
      "memref",
      "tensor",
      "f16",
      "bf16",
      "f32",
      "i32",
      "index",
      "strided<[?, ?, 1], offset: ?>",
      "#paged_attn.kv_layout<hnd>",
      "#paged_attn.kv_layout<nhd>",
      "layout",
      "scale",
      "0x7FC00000",
      "-1",
      "0",
      "9223372036854775807",
      "4611686018427387904",
      "2147483648",
      "affine_map<(d0) -> (d0)>",
      "#gpu.address_space<workgroup>",
      "func.func",
      "return",
      "\"",
      "@f",
      "%",
      "^bb0:",
      "dense<1.0>",
      "=",
      "[",
      "]",
      "#",
      "!",
      "unit"};
  return words;
}

/// A size-like token (`4x32x128xbf16`) with one of its sizes changed.
std::string mutateShape(const std::string &token, Rng &rng) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= token.size(); ++i)
    if (i == token.size() || token[i] == 'x') {
      parts.push_back(token.substr(start, i - start));
      start = i + 1;
    }
  size_t which = below(rng, parts.size());
  parts[which] = chance(rng, 0.3) ? "?" : std::to_string(edgeSize(rng));
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i)
    out += (i ? "x" : "") + parts[i];
  return out;
}

} // namespace

std::string paged_attn_fuzz::mutateText(const std::string &text, Rng &rng) {
  std::vector<std::string> tokens = tokenize(text);
  if (tokens.empty())
    return pick(rng, dictionary());
  size_t at = below(rng, tokens.size());
  std::string &token = tokens[at];
  switch (below(rng, 9)) {
  case 0: // a number or a size: an edge value
    if (std::isdigit(static_cast<unsigned char>(token[0])))
      token = token.find('x') != std::string::npos
                  ? mutateShape(token, rng)
                  : std::to_string(edgeSize(rng));
    else
      token = std::to_string(edgeSize(rng));
    break;
  case 1:
    tokens.erase(tokens.begin() + at);
    break;
  case 2:
    tokens.insert(tokens.begin() + at, pick(rng, dictionary()));
    break;
  case 3: { // repeat a short run of tokens
    size_t n = 1 + below(rng, std::min<size_t>(8, tokens.size() - at));
    std::vector<std::string> run(tokens.begin() + at, tokens.begin() + at + n);
    tokens.insert(tokens.begin() + at, run.begin(), run.end());
    break;
  }
  case 4:
    std::swap(token, tokens[below(rng, tokens.size())]);
    break;
  case 5: // misspell
    if (token.size() > 1) {
      size_t i = below(rng, token.size() - 1);
      if (chance(rng, 0.5))
        std::swap(token[i], token[i + 1]);
      else
        token.erase(i, 1);
    }
    break;
  case 6:
    tokens.resize(at);
    break;
  case 7: { // one byte, mostly printable
    int c = chance(rng, 0.9) ? int(32 + below(rng, 95)) : int(below(rng, 256));
    token[below(rng, token.size())] = char(c);
    break;
  }
  default:
    token = pick(rng, dictionary());
  }
  std::string out;
  for (const std::string &t : tokens)
    out += t;
  return out;
}

std::string
paged_attn_fuzz::generateInput(uint64_t seed, uint64_t index,
                               const std::vector<std::string> &corpus) {
  // A generator per input: inputs do not depend on the ones before.
  std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(index),
                    uint32_t(index >> 32)};
  Rng rng(seq);
  std::string text;
  if (!corpus.empty() && chance(rng, 0.2)) {
    text = pick(rng, corpus);
    for (size_t n = 1 + below(rng, 3); n > 0; --n)
      text = mutateText(text, rng);
    return text;
  }
  text = optionsLine(rng) + function(rng, "decode");
  if (chance(rng, 0.08))
    text += function(rng, "decode2");
  if (chance(rng, 0.12))
    for (size_t n = 1 + below(rng, 3); n > 0; --n)
      text = mutateText(text, rng);
  return text;
}
