//===- Memory.cpp - mgpu allocation, copies, memsets, host registration ---===//
//
// gpu.alloc, gpu.dealloc, gpu.memcpy, gpu.memset, gpu.host_register and
// gpu.host_unregister. Allocations use cuMemAlloc (or cuMemAllocManaged for
// `host_shared`), not the stream-ordered allocator, as MLIR's own wrappers
// do; that makes a free the one place where order matters: the kernels
// queued on the stream before a gpu.dealloc may still be using the memory,
// so the free waits for the stream first.
//
//===----------------------------------------------------------------------===//

#include "Wrappers.h"

#include "PagedAttn-c/Mgpu.h"

#include <cstdint>

using namespace paged_attn;
using namespace paged_attn::cuda;

static CUstream asStream(mgpu_stream stream) {
  return reinterpret_cast<CUstream>(stream);
}
static CUdeviceptr asDevicePtr(const void *ptr) {
  return CUdeviceptr(reinterpret_cast<uintptr_t>(ptr));
}

extern "C" void *mgpuMemAlloc(uint64_t size, mgpu_stream stream,
                              uint8_t host_shared) {
  (void)stream;
  // An empty memref needs no memory, and the driver refuses zero bytes.
  if (size == 0)
    return nullptr;
  const char *wrapper = "mgpuMemAlloc";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return nullptr;
  const Driver &d = context.driver();
  CUdeviceptr ptr = 0;
  if (host_shared) {
    if (!mgpu::requireEntryPoint(d.cuMemAllocManaged, wrapper,
                                 "cuMemAllocManaged") ||
        !mgpu::check(d, wrapper, "cuMemAllocManaged",
                     d.cuMemAllocManaged(&ptr, size, CU_MEM_ATTACH_GLOBAL)))
      return nullptr;
  } else if (!mgpu::check(
                 d, wrapper,
                 ("cuMemAlloc(" + std::to_string(size) + " bytes)").c_str(),
                 d.cuMemAlloc(&ptr, size))) {
    return nullptr;
  }
  return reinterpret_cast<void *>(uintptr_t(ptr));
}

extern "C" void mgpuMemFree(void *ptr, mgpu_stream stream) {
  if (!ptr)
    return;
  const char *wrapper = "mgpuMemFree";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  // Without a stream, the work that may use the memory could be on any.
  bool drained = stream ? mgpu::check(d, wrapper, "cuStreamSynchronize",
                                      d.cuStreamSynchronize(asStream(stream)))
                        : mgpu::check(d, wrapper, "cuCtxSynchronize",
                                      d.cuCtxSynchronize());
  if (drained)
    mgpu::check(d, wrapper, "cuMemFree", d.cuMemFree(asDevicePtr(ptr)));
}

extern "C" void mgpuMemcpy(void *dst, void *src, size_t size,
                           mgpu_stream stream) {
  if (size == 0)
    return;
  const char *wrapper = "mgpuMemcpy";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  // With unified addressing the driver tells host from device pointers.
  if (mgpu::requireEntryPoint(d.cuMemcpyAsync, wrapper, "cuMemcpyAsync"))
    mgpu::check(d, wrapper, "cuMemcpyAsync",
                d.cuMemcpyAsync(asDevicePtr(dst), asDevicePtr(src), size,
                                asStream(stream)));
}

extern "C" void mgpuMemset16(void *dst, unsigned short value, size_t count,
                             mgpu_stream stream) {
  if (count == 0)
    return;
  const char *wrapper = "mgpuMemset16";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  if (mgpu::requireEntryPoint(d.cuMemsetD16Async, wrapper, "cuMemsetD16Async"))
    mgpu::check(
        d, wrapper, "cuMemsetD16Async",
        d.cuMemsetD16Async(asDevicePtr(dst), value, count, asStream(stream)));
}

extern "C" void mgpuMemset32(void *dst, unsigned int value, size_t count,
                             mgpu_stream stream) {
  if (count == 0)
    return;
  mgpu::ScopedContext context("mgpuMemset32");
  if (context)
    mgpu::check(context.driver(), "mgpuMemset32", "cuMemsetD32Async",
                context.driver().cuMemsetD32Async(asDevicePtr(dst), value,
                                                  count, asStream(stream)));
}

extern "C" void mgpuMemHostRegister(void *ptr, uint64_t size) {
  if (size == 0)
    return;
  const char *wrapper = "mgpuMemHostRegister";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  if (mgpu::requireEntryPoint(d.cuMemHostRegister, wrapper,
                              "cuMemHostRegister"))
    mgpu::check(d, wrapper, "cuMemHostRegister",
                d.cuMemHostRegister(ptr, size, /*flags=*/0));
}

extern "C" void mgpuMemHostUnregister(void *ptr) {
  if (!ptr)
    return;
  const char *wrapper = "mgpuMemHostUnregister";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  if (mgpu::requireEntryPoint(d.cuMemHostUnregister, wrapper,
                              "cuMemHostUnregister"))
    mgpu::check(d, wrapper, "cuMemHostUnregister", d.cuMemHostUnregister(ptr));
}

namespace {
/// A ranked memref's descriptor as the LLVM lowering lays it out: two
/// pointers and the offset, followed by `rank` sizes and `rank` strides.
struct DescriptorHead {
  char *allocated;
  char *aligned;
  int64_t offset;
};
} // namespace

/// The first byte and the byte size of a dense memref; false, reported,
/// when it is not dense (a registration covers one contiguous range).
static bool denseRange(const char *wrapper, int64_t rank, void *descriptor,
                       int64_t elementBytes, char **start, uint64_t *bytes) {
  auto *m = static_cast<DescriptorHead *>(descriptor);
  if (!m || rank < 0 || elementBytes <= 0) {
    mgpu::reportError(wrapper, "invalid memref descriptor");
    return false;
  }
  const auto *sizes = reinterpret_cast<const int64_t *>(m + 1);
  const int64_t *strides = sizes + rank;
  int64_t elements = 1;
  for (int64_t i = rank - 1; i >= 0; --i) {
    if (sizes[i] != 1 && strides[i] != elements) {
      mgpu::reportError(wrapper, "memref dimension " + std::to_string(i) +
                                     " has stride " +
                                     std::to_string(strides[i]) +
                                     "; only dense memrefs can be registered");
      return false;
    }
    elements *= sizes[i];
  }
  *start = m->aligned + m->offset * elementBytes;
  *bytes = uint64_t(elements) * uint64_t(elementBytes);
  return true;
}

extern "C" void mgpuMemHostRegisterMemRef(int64_t rank, void *descriptor,
                                          int64_t element_bytes) {
  char *start = nullptr;
  uint64_t bytes = 0;
  if (denseRange("mgpuMemHostRegisterMemRef", rank, descriptor, element_bytes,
                 &start, &bytes))
    mgpuMemHostRegister(start, bytes);
}

extern "C" void mgpuMemHostUnregisterMemRef(int64_t rank, void *descriptor,
                                            int64_t element_bytes) {
  char *start = nullptr;
  uint64_t bytes = 0;
  if (denseRange("mgpuMemHostUnregisterMemRef", rank, descriptor, element_bytes,
                 &start, &bytes) &&
      bytes != 0)
    mgpuMemHostUnregister(start);
}
