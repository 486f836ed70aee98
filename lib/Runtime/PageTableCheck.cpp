//===- PageTableCheck.cpp - decode()'s check mode -------------------------===//
//
// With DecodeParams::checkPageTable, decode() first runs the check kernel
// over block_table and seq_lens and fails with BadPageTable naming the
// first bad entry and its value. A bad entry would otherwise make the
// decode kernel read outside the KV cache. The check allocates 8 bytes and
// synchronises: a debugging aid, not for graphs.
//
//===----------------------------------------------------------------------===//

#include "LaunchParams.h"
#include "Manifest.h"
#include "ModuleCache.h"
#include "Validation.h"

#include <climits>

using namespace paged_attn;
using namespace paged_attn::cuda;
using namespace paged_attn::detail;

/// Every operand of the decode kernel must be device memory: the check
/// kernel reads the page table, and a host pointer would fault there.
static Status checkDeviceMemory(const Driver &d, const KernelSpec &spec,
                                const DecodeParams &p) {
  for (const BoundParam &bound : spec.decode.params) {
    const Tensor *t = operandTensor(p, bound.value);
    if (!t)
      continue;
    unsigned memoryType = 0;
    CUresult r =
        d.cuPointerGetAttribute(&memoryType, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                reinterpret_cast<CUdeviceptr>(t->data));
    if (r != CUDA_SUCCESS || (memoryType != CU_MEMORYTYPE_DEVICE &&
                              memoryType != CU_MEMORYTYPE_UNIFIED))
      return invalid(std::string(bound.param.name) + " is not device memory");
  }
  return Status::ok();
}

/// Device memory freed when it goes out of scope.
namespace {
struct DeviceScalar {
  const Driver *d;
  CUdeviceptr ptr = 0;
  ~DeviceScalar() {
    if (ptr)
      d->cuMemFree(ptr);
  }
};
} // namespace

/// Runs the check kernel and reads back its result: the smallest key
/// b * (max_pages + 1) + j + 1 of a bad block_table[b][j], or of a bad
/// seq_lens[b] with j = -1; INT64_MAX when all is well.
static Status runCheckKernel(const Driver &d, const KernelSpec &spec,
                             CUfunction fn, const DecodeParams &p,
                             int64_t numPages, CUstream stream, int64_t *key) {
  DeviceScalar firstBad{&d};
  CUresult r = d.cuMemAlloc(&firstBad.ptr, sizeof(int64_t));
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError, "cuMemAlloc: " + describe(d, r));
  int64_t none = INT64_MAX;
  if ((r = d.cuMemcpyHtoDAsync(firstBad.ptr, &none, sizeof(none), stream)) !=
      CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "cuMemcpyHtoDAsync: " + describe(d, r));
  const int64_t resultSize[1] = {1}, resultStride[1] = {1};
  LaunchValues values;
  values.setMemRef(LaunchValue::BlockTable, p.blockTable);
  values.setMemRef(LaunchValue::SeqLens, p.seqLens);
  values.setInt(LaunchValue::NumPages, numPages);
  values.setMemRef(LaunchValue::FirstBad,
                   reinterpret_cast<void *>(firstBad.ptr), 1, resultSize,
                   resultStride);
  ParamBuilder args;
  if (Status s = args.pack(spec.check.name, spec.check.params, values); !s)
    return s;
  r = d.cuLaunchKernel(fn, unsigned(p.q.sizes[0]), 1, 1,
                       unsigned(spec.check.block), 1, 1, 0, stream, nullptr,
                       args.extra());
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "launching " + spec.check.name + ": " + describe(d, r));
  if ((r = d.cuMemcpyDtoHAsync(key, firstBad.ptr, sizeof(*key), stream)) !=
          CUDA_SUCCESS ||
      (r = d.cuStreamSynchronize(stream)) != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "page-table check failed: " + describe(d, r));
  return Status::ok();
}

/// The message for the check kernel's `key`, with the offending value read
/// back from the device.
static Status badEntry(const Driver &d, const DecodeParams &p, int64_t pageSize,
                       int64_t numPages, int64_t key) {
  int64_t maxPages = p.blockTable.sizes[1];
  int64_t b = key / (maxPages + 1), j = key % (maxPages + 1) - 1;
  auto readI32 = [&](const Tensor &t, int64_t offset) {
    int32_t value = 0;
    d.cuMemcpyDtoH(&value, reinterpret_cast<CUdeviceptr>(t.data) + offset * 4,
                   sizeof(value));
    return value;
  };
  if (j < 0) {
    int32_t len = readI32(p.seqLens, b * p.seqLens.strides[0]);
    return Status(StatusCode::BadPageTable,
                  "seq_lens[" + std::to_string(b) +
                      "] = " + std::to_string(len) + " is outside [0, " +
                      std::to_string(maxPages * pageSize) +
                      "] (max_pages * page_size)");
  }
  int32_t page = readI32(p.blockTable, b * p.blockTable.strides[0] +
                                           j * p.blockTable.strides[1]);
  return Status(StatusCode::BadPageTable,
                "block_table[" + std::to_string(b) + "][" + std::to_string(j) +
                    "] = " + std::to_string(page) + " is outside [0, " +
                    std::to_string(numPages) + ") (the KV cache's pages)");
}

Status Decoder::checkPageTable(const DecodeParams &p, void *streamPtr,
                               void *context) const {
  const Driver *d;
  Status s = requireDriver(&d);
  if (!s)
    return s;
  CUstream stream = static_cast<CUstream>(streamPtr);
  CUcontext ctx = static_cast<CUcontext>(context);
  LoadedKernels kernels;
  if (!(s = ModuleCache::get().lookup(*d, ctx, *spec_, &kernels)) ||
      !(s = checkDeviceMemory(*d, *spec_, p)))
    return s;
  int64_t numPages = p.kCache.sizes[0];
  if (numPages > INT32_MAX)
    return invalid("more than 2^31 pages");
  // The check's result key, b * (max_pages + 1) + j + 1, must fit in i64.
  if (p.blockTable.sizes[1] > INT32_MAX)
    return invalid("more than 2^31 pages per sequence");
  int64_t key = 0;
  if (!(s = runCheckKernel(*d, *spec_, kernels.check, p, numPages, stream,
                           &key)))
    return s;
  if (key == INT64_MAX)
    return Status::ok();
  return badEntry(*d, p, config_.pageSize, numPages, key);
}
