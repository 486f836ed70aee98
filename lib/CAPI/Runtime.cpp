//===- Runtime.cpp - C API of the PagedAttn runtime -----------------------===//
//
// A thin layer over the C++ API: handles own the C++ objects, statuses
// become return codes and messages for paged_attn_last_error(). The C enums
// are cast to the Spec's, so they must agree value for value; the op's
// rules on a config (and their messages) are the Spec's validate(), run by
// Decoder::create.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn-c/Runtime.h"
#include "PagedAttn/Runtime/Runtime.h"

#include <cstring>
#include <optional>
#include <string>
#include <type_traits>

using namespace paged_attn;

static_assert(PAGED_ATTN_F16 == int(DType::F16) &&
                  PAGED_ATTN_BF16 == int(DType::BF16) &&
                  PAGED_ATTN_F32 == int(DType::F32) &&
                  PAGED_ATTN_I32 == int(DType::I32) &&
                  PAGED_ATTN_I64 == int(DType::I64) &&
                  PAGED_ATTN_I8 == int(DType::I8) &&
                  PAGED_ATTN_F8E4M3FN == int(DType::F8E4M3FN) &&
                  PAGED_ATTN_F8E5M2 == int(DType::F8E5M2),
              "paged_attn_dtype is cast to the Spec's DType");
static_assert(PAGED_ATTN_NHD == int(Layout::NHD) &&
                  PAGED_ATTN_HND == int(Layout::HND),
              "paged_attn_layout is cast to the Spec's Layout");

struct paged_attn_library_s {
  std::shared_ptr<KernelLibrary> library;
};
struct paged_attn_decoder_s {
  std::unique_ptr<Decoder> decoder;
};
struct paged_attn_merger_s {
  std::unique_ptr<Merger> merger;
};
struct paged_attn_appender_s {
  std::unique_ptr<Appender> appender;
};

static thread_local std::string lastError;

static paged_attn_status report(const Status &s) {
  lastError = s.isOk() ? std::string() : s.message();
  return static_cast<paged_attn_status>(s.code());
}

static paged_attn_status nullArgument(const char *name) {
  return report(
      Status(StatusCode::InvalidArgument, std::string(name) + " is null"));
}

/// The C++ view of `t`, after what only the C API can get wrong: a dtype
/// outside the C enum (which the cast would make another dtype) and a rank
/// outside [0, 4] (which would index past sizes[4]). `name` is the
/// operand's, for the message.
/// The value a C caller stored in an enum field, read as its underlying
/// integer: the caller may have stored any int, and loading one outside
/// the enumerators as the enum type is undefined in C++.
template <typename Enum> static int64_t rawEnum(const Enum &field) {
  std::underlying_type_t<Enum> raw;
  std::memcpy(&raw, &field, sizeof raw);
  return int64_t(raw);
}

/// Whether `dtype` is one of paged_attn_dtype's enumerators. Which of them
/// an operand or a config field may have is the Spec's to say (the fp8
/// ones are caches' of a quantised config only).
static bool isCDType(int64_t dtype) {
  return dtype >= PAGED_ATTN_F16 && dtype <= PAGED_ATTN_F8E5M2;
}

/// The quantisation a config's kv_scale and kv_dtype ask for (none when
/// kv_scale is 0); an error naming the field for a kv_scale outside the
/// enum or a kv_dtype that is not fp8.
static Status toKVQuant(int32_t kvScale, const paged_attn_dtype &kvDType,
                        std::optional<KVQuant> *quant) {
  quant->reset();
  KVScaleKind kind;
  switch (kvScale) {
  case PAGED_ATTN_KV_UNQUANTIZED:
    return Status::ok();
  case PAGED_ATTN_KV_SCALE_TENSOR:
    kind = KVScaleKind::Tensor;
    break;
  case PAGED_ATTN_KV_SCALE_HEAD:
    kind = KVScaleKind::Head;
    break;
  case PAGED_ATTN_KV_SCALE_TOKEN:
    kind = KVScaleKind::Token;
    break;
  default:
    return Status(StatusCode::InvalidArgument,
                  "unknown kv_scale " + std::to_string(kvScale) +
                      " (0: unquantised, 1: per tensor, 2: per head, 3: per "
                      "token)");
  }
  int64_t dtype = rawEnum(kvDType);
  if (!isCDType(dtype) || !isQuantizedCacheDType(static_cast<DType>(dtype))) {
    std::string got = isCDType(dtype) ? dtypeName(static_cast<DType>(dtype))
                                      : std::to_string(dtype);
    return Status(StatusCode::InvalidArgument,
                  "kv_dtype must be PAGED_ATTN_F8E4M3FN or PAGED_ATTN_F8E5M2 "
                  "when kv_scale is set, got " +
                      got);
  }
  *quant = KVQuant{static_cast<DType>(dtype), kind};
  return Status::ok();
}

static Status toTensor(const char *name, const paged_attn_tensor &t,
                       Tensor *r) {
  if (t.rank < 0 || t.rank > 4)
    return Status(StatusCode::InvalidArgument,
                  std::string(name) + " is not a valid tensor: its rank (" +
                      std::to_string(t.rank) + ") is outside [0, 4]");
  int64_t dtype = rawEnum(t.dtype);
  if (!isCDType(dtype))
    return Status(StatusCode::InvalidArgument, std::string(name) +
                                                   " has an invalid dtype (" +
                                                   std::to_string(dtype) + ")");
  r->data = t.data;
  r->dtype = static_cast<DType>(dtype);
  r->rank = t.rank;
  for (int d = 0; d < 4; ++d) {
    r->sizes[d] = t.sizes[d];
    r->strides[d] = t.strides[d];
  }
  return Status::ok();
}

namespace {
/// A C tensor of a call and the C++ tensor it becomes.
struct Operand {
  const char *name;
  const paged_attn_tensor &from;
  Tensor &to;
};
} // namespace

/// toTensor of each operand, in order; the first failure.
static Status toTensors(std::initializer_list<Operand> operands) {
  for (const Operand &operand : operands)
    if (Status s = toTensor(operand.name, operand.from, &operand.to); !s)
      return s;
  return Status::ok();
}

/// A tensor every call refuses (rank -1), after a failed
/// paged_attn_tensor_contiguous: the reason goes to last_error.
static paged_attn_tensor invalidTensor(paged_attn_tensor t,
                                       const std::string &why) {
  lastError = "paged_attn_tensor_contiguous: " + why;
  t.rank = -1;
  return t;
}

extern "C" {

const char *paged_attn_last_error(void) { return lastError.c_str(); }

int paged_attn_has_driver(void) { return hasDriver() ? 1 : 0; }

void paged_attn_decode_params_init(paged_attn_decode_params *params) {
  if (!params)
    return;
  *params = paged_attn_decode_params{};
  params->max_seq_len = -1;
}

paged_attn_tensor paged_attn_tensor_contiguous(void *data,
                                               paged_attn_dtype dtype,
                                               int32_t rank,
                                               const int64_t *sizes) {
  paged_attn_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.rank = rank;
  if (rank < 0 || rank > 4)
    return invalidTensor(t,
                         "rank " + std::to_string(rank) + " is outside [0, 4]");
  if (rank > 0 && !sizes)
    return invalidTensor(t, "sizes is null");
  int64_t stride = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    t.sizes[d] = sizes[d];
    t.strides[d] = stride;
    if (__builtin_mul_overflow(stride, sizes[d], &stride))
      return invalidTensor(t, "the product of the sizes overflows int64");
  }
  return t;
}

paged_attn_status paged_attn_library_load(const char *manifest_path,
                                          paged_attn_library *library) {
  if (!manifest_path)
    return nullArgument("manifest_path");
  if (!library)
    return nullArgument("library");
  auto handle = std::make_unique<paged_attn_library_s>();
  Status s = KernelLibrary::load(manifest_path, &handle->library);
  if (s)
    *library = handle.release();
  return report(s);
}

paged_attn_status
paged_attn_library_load_directory(const char *directory,
                                  paged_attn_library *library) {
  if (!directory)
    return nullArgument("directory");
  if (!library)
    return nullArgument("library");
  auto handle = std::make_unique<paged_attn_library_s>();
  Status s = KernelLibrary::loadDirectory(directory, &handle->library);
  if (s)
    *library = handle.release();
  return report(s);
}

void paged_attn_library_destroy(paged_attn_library library) { delete library; }

paged_attn_status paged_attn_decoder_create(paged_attn_library library,
                                            const paged_attn_config *config,
                                            paged_attn_decoder *decoder) {
  if (!library)
    return nullArgument("library");
  if (!config)
    return nullArgument("config");
  if (!decoder)
    return nullArgument("decoder");
  // Out-of-range enum values are refused here: the Spec's names and rules
  // are defined on its enums' values only.
  int64_t layout = rawEnum(config->layout), dtype = rawEnum(config->dtype);
  if (layout != PAGED_ATTN_NHD && layout != PAGED_ATTN_HND)
    return report(Status(StatusCode::InvalidArgument, "unknown layout"));
  if (!isCDType(dtype))
    return report(Status(StatusCode::InvalidArgument, "unknown dtype"));
  KernelConfig c;
  c.numHeads = config->num_heads;
  c.numKVHeads = config->num_kv_heads;
  c.headDim = config->head_dim;
  c.pageSize = config->page_size;
  c.dtype = static_cast<DType>(dtype);
  c.layout = static_cast<Layout>(layout);
  c.numWarps = config->num_warps ? config->num_warps : 4;
  constexpr uint32_t kKnownVariants =
      PAGED_ATTN_VARIANT_WINDOW | PAGED_ATTN_VARIANT_SOFT_CAP |
      PAGED_ATTN_VARIANT_ALIBI | PAGED_ATTN_VARIANT_SINKS |
      PAGED_ATTN_VARIANT_LSE | PAGED_ATTN_VARIANT_TREE_MASK;
  if (config->variants & ~kKnownVariants)
    return report(
        Status(StatusCode::InvalidArgument,
               "unknown variant flags " +
                   std::to_string(config->variants & ~kKnownVariants)));
  c.variants.window = config->variants & PAGED_ATTN_VARIANT_WINDOW;
  c.variants.softCap = config->variants & PAGED_ATTN_VARIANT_SOFT_CAP;
  c.variants.alibi = config->variants & PAGED_ATTN_VARIANT_ALIBI;
  c.variants.sinks = config->variants & PAGED_ATTN_VARIANT_SINKS;
  c.variants.lse = config->variants & PAGED_ATTN_VARIANT_LSE;
  c.variants.treeMask = config->variants & PAGED_ATTN_VARIANT_TREE_MASK;
  c.queryLen = config->query_len ? config->query_len : 1;
  if (Status s = toKVQuant(config->kv_scale, config->kv_dtype, &c.kvQuant); !s)
    return report(s);
  auto handle = std::make_unique<paged_attn_decoder_s>();
  Status s = Decoder::create(library->library, c, &handle->decoder);
  if (s)
    *decoder = handle.release();
  return report(s);
}

void paged_attn_decoder_destroy(paged_attn_decoder decoder) { delete decoder; }

paged_attn_status
paged_attn_decoder_get_workspace_size(paged_attn_decoder decoder, int64_t batch,
                                      int32_t num_splits, size_t *bytes) {
  if (!decoder)
    return nullArgument("decoder");
  if (!bytes)
    return nullArgument("bytes");
  return report(decoder->decoder->workspaceSize(batch, num_splits, bytes));
}

size_t paged_attn_decoder_workspace_size(paged_attn_decoder decoder,
                                         int64_t batch, int32_t num_splits) {
  size_t bytes = 0;
  if (paged_attn_decoder_get_workspace_size(decoder, batch, num_splits,
                                            &bytes) != PAGED_ATTN_OK)
    return 0;
  return bytes;
}

paged_attn_status
paged_attn_decoder_max_workspace_size(paged_attn_decoder decoder, int64_t batch,
                                      int64_t max_seq_len, size_t *bytes) {
  if (!decoder)
    return nullArgument("decoder");
  if (!bytes)
    return nullArgument("bytes");
  return report(decoder->decoder->maxWorkspaceSize(batch, max_seq_len, bytes));
}

paged_attn_status paged_attn_decode(paged_attn_decoder decoder,
                                    const paged_attn_decode_params *params,
                                    void *stream) {
  if (!decoder)
    return nullArgument("decoder");
  if (!params)
    return nullArgument("params");
  DecodeParams p;
  if (Status s =
          toTensors({{"q", params->q, p.q},
                     {"k_cache", params->k_cache, p.kCache},
                     {"v_cache", params->v_cache, p.vCache},
                     {"block_table", params->block_table, p.blockTable},
                     {"seq_lens", params->seq_lens, p.seqLens},
                     {"out", params->out, p.out},
                     {"alibi_slopes", params->alibi_slopes, p.alibiSlopes},
                     {"sinks", params->sinks, p.sinks},
                     {"lse", params->lse, p.lse},
                     {"tree_mask", params->tree_mask, p.treeMask},
                     {"k_scale", params->k_scale, p.kScale},
                     {"v_scale", params->v_scale, p.vScale}});
      !s)
    return report(s);
  p.scale = params->scale;
  p.maxSeqLen = params->max_seq_len;
  p.numSplits = params->num_splits;
  p.splitChunk = params->split_chunk;
  p.hostSeqLens = params->host_seq_lens;
  p.workspace = params->workspace;
  p.workspaceBytes = params->workspace_bytes;
  p.checkPageTable = params->check_page_table != 0;
  p.window = params->window;
  p.softCap = params->soft_cap;
  return report(decoder->decoder->decode(p, stream));
}

paged_attn_status
paged_attn_merger_create(paged_attn_library library,
                         const paged_attn_merge_config *config,
                         paged_attn_merger *merger) {
  if (!library)
    return nullArgument("library");
  if (!config)
    return nullArgument("config");
  if (!merger)
    return nullArgument("merger");
  int64_t dtype = rawEnum(config->dtype);
  if (!isCDType(dtype))
    return report(Status(StatusCode::InvalidArgument, "unknown dtype"));
  constexpr uint32_t kMergeVariants =
      PAGED_ATTN_VARIANT_SINKS | PAGED_ATTN_VARIANT_LSE;
  if (config->variants & ~kMergeVariants)
    return report(Status(StatusCode::InvalidArgument,
                         "a merge takes the sinks and lse variants only, got "
                         "flags " +
                             std::to_string(config->variants)));
  MergeConfig c = MergeConfig::forOp(
      config->num_heads, config->head_dim, static_cast<DType>(dtype),
      config->variants & PAGED_ATTN_VARIANT_SINKS,
      config->variants & PAGED_ATTN_VARIANT_LSE);
  auto handle = std::make_unique<paged_attn_merger_s>();
  Status s = Merger::create(library->library, c, &handle->merger);
  if (s)
    *merger = handle.release();
  return report(s);
}

void paged_attn_merger_destroy(paged_attn_merger merger) { delete merger; }

paged_attn_status paged_attn_merge(paged_attn_merger merger,
                                   const paged_attn_merge_params *params,
                                   void *stream) {
  if (!merger)
    return nullArgument("merger");
  if (!params)
    return nullArgument("params");
  MergeParams p;
  if (Status s = toTensors({{"partial_out", params->partial_out, p.partialOut},
                            {"partial_lse", params->partial_lse, p.partialLse},
                            {"out", params->out, p.out},
                            {"sinks", params->sinks, p.sinks},
                            {"lse", params->lse, p.lse}});
      !s)
    return report(s);
  return report(merger->merger->merge(p, stream));
}

paged_attn_status
paged_attn_appender_create(paged_attn_library library,
                           const paged_attn_append_config *config,
                           paged_attn_appender *appender) {
  if (!library)
    return nullArgument("library");
  if (!config)
    return nullArgument("config");
  if (!appender)
    return nullArgument("appender");
  int64_t layout = rawEnum(config->layout), dtype = rawEnum(config->dtype);
  if (layout != PAGED_ATTN_NHD && layout != PAGED_ATTN_HND)
    return report(Status(StatusCode::InvalidArgument, "unknown layout"));
  if (!isCDType(dtype))
    return report(Status(StatusCode::InvalidArgument, "unknown dtype"));
  AppendConfig c;
  c.numKVHeads = config->num_kv_heads;
  c.headDim = config->head_dim;
  c.pageSize = config->page_size;
  c.dtype = static_cast<DType>(dtype);
  c.layout = static_cast<Layout>(layout);
  if (Status s = toKVQuant(config->kv_scale, config->kv_dtype, &c.kvQuant); !s)
    return report(s);
  auto handle = std::make_unique<paged_attn_appender_s>();
  Status s = Appender::create(library->library, c, &handle->appender);
  if (s)
    *appender = handle.release();
  return report(s);
}

void paged_attn_appender_destroy(paged_attn_appender appender) {
  delete appender;
}

paged_attn_status paged_attn_append(paged_attn_appender appender,
                                    const paged_attn_append_params *params,
                                    void *stream) {
  if (!appender)
    return nullArgument("appender");
  if (!params)
    return nullArgument("params");
  AppendParams p;
  if (Status s =
          toTensors({{"k", params->k, p.k},
                     {"v", params->v, p.v},
                     {"slot_mapping", params->slot_mapping, p.slotMapping},
                     {"k_cache", params->k_cache, p.kCache},
                     {"v_cache", params->v_cache, p.vCache},
                     {"k_scale", params->k_scale, p.kScale},
                     {"v_scale", params->v_scale, p.vScale}});
      !s)
    return report(s);
  return report(appender->appender->append(p, stream));
}

} // extern "C"
