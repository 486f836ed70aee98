/*===- PagedAttn-c/Mgpu.h - the host ABI of MLIR's GPU dialect ----*- C -*-===*\
|*                                                                            *|
|* Host code lowered by MLIR's `gpu-to-llvm` and the `gpu.binary` translation *|
|* (`#gpu.select_object`) calls these functions; LLVM 22's emitted calls fix  *|
|* their names and signatures (index operands are intptr_t, streams, events,  *|
|* modules and functions opaque pointers). libpaged_attn_mgpu implements them *|
|* on the CUDA driver, which it loads at run time ($PAGED_ATTN_CUDA_DRIVER or *|
|* libcuda.so.1), so programs link it instead of MLIR's CUDA runtime          *|
|* wrappers, which Debian's MLIR lacks.                                       *|
|*                                                                            *|
|* Like MLIR's wrappers the functions return nothing and report a failed      *|
|* driver call on stderr, naming the wrapper, the driver call and the CUDA    *|
|* error; a failed call returns null where it returns a handle. They also     *|
|* count failures (paged_attn_mgpu_error_count), so that a program can tell   *|
|* it should not trust its results, and PAGED_ATTN_MGPU_ABORT_ON_ERROR=1      *|
|* makes the first failure abort the process.                                 *|
|*                                                                            *|
|* The functions act on the primary context of the default device             *|
|* (mgpuSetDefaultDevice, per thread, 0 unless set), made current for the     *|
|* call and the caller's context restored after it.                           *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef PAGEDATTN_C_MGPU_H
#define PAGEDATTN_C_MGPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mgpu_module_st *mgpu_module;     /* CUmodule */
typedef struct mgpu_function_st *mgpu_function; /* CUfunction */
typedef struct mgpu_stream_st *mgpu_stream;     /* CUstream */
typedef struct mgpu_event_st *mgpu_event;       /* CUevent */

/* Modules: a cubin or fatbin of `size` bytes, or NUL-terminated PTX that the
 * driver compiles at `opt_level` (0-4; a gpu.object's `O` property). The
 * translation loads every gpu.binary in a global constructor and unloads it
 * in a destructor. */
mgpu_module mgpuModuleLoad(const void *data, size_t size);
mgpu_module mgpuModuleLoadJIT(const void *ptx, int opt_level);
void mgpuModuleUnload(mgpu_module module);
mgpu_function mgpuModuleGetFunction(mgpu_module module, const char *name);

/* Launches: grid and block sizes, dynamic shared memory bytes (opted into
 * past the 48 KiB default), the stream, `params[i]` pointing at the kernel's
 * i-th argument (`params_count` of them), `extra` as cuLaunchKernel's. */
void mgpuLaunchKernel(mgpu_function function, intptr_t grid_x, intptr_t grid_y,
                      intptr_t grid_z, intptr_t block_x, intptr_t block_y,
                      intptr_t block_z, int32_t shared_bytes,
                      mgpu_stream stream, void **params, void **extra,
                      size_t params_count);
/* The same with thread-block clusters (sm_90 and later); no parameter count
 * in LLVM 22's call. */
void mgpuLaunchClusterKernel(mgpu_function function, intptr_t cluster_x,
                             intptr_t cluster_y, intptr_t cluster_z,
                             intptr_t grid_x, intptr_t grid_y, intptr_t grid_z,
                             intptr_t block_x, intptr_t block_y,
                             intptr_t block_z, int32_t shared_bytes,
                             mgpu_stream stream, void **params, void **extra);

/* Streams (non-blocking) and events (without timing). */
mgpu_stream mgpuStreamCreate(void);
void mgpuStreamDestroy(mgpu_stream stream);
void mgpuStreamSynchronize(mgpu_stream stream);
void mgpuStreamWaitEvent(mgpu_stream stream, mgpu_event event);
mgpu_event mgpuEventCreate(void);
void mgpuEventDestroy(mgpu_event event);
void mgpuEventSynchronize(mgpu_event event);
void mgpuEventRecord(mgpu_event event, mgpu_stream stream);

/* Memory. Allocation is immediate (not stream-ordered), so a free first
 * waits for `stream` (for the whole device when it is null): the kernels
 * queued before it may still use the memory. A nonzero `host_shared` makes
 * managed memory; zero bytes allocate nothing and return null. Copies run on
 * `stream` between any two pointers the device can address (unified
 * addressing); memsets write `count` 16- or 32-bit values. */
void *mgpuMemAlloc(uint64_t size, mgpu_stream stream, uint8_t host_shared);
void mgpuMemFree(void *ptr, mgpu_stream stream);
void mgpuMemcpy(void *dst, void *src, size_t size, mgpu_stream stream);
void mgpuMemset16(void *dst, unsigned short value, size_t count,
                  mgpu_stream stream);
void mgpuMemset32(void *dst, unsigned int value, size_t count,
                  mgpu_stream stream);

/* Page-locks host memory so that kernels can address it (gpu.host_register
 * passes a ranked memref's descriptor, which must be dense). */
void mgpuMemHostRegister(void *ptr, uint64_t size);
void mgpuMemHostRegisterMemRef(int64_t rank, void *descriptor,
                               int64_t element_bytes);
void mgpuMemHostUnregister(void *ptr);
void mgpuMemHostUnregisterMemRef(int64_t rank, void *descriptor,
                                 int64_t element_bytes);

/* The device later calls of this thread act on. */
void mgpuSetDefaultDevice(int32_t device);

/* Failed calls since the library was loaded. */
uint64_t paged_attn_mgpu_error_count(void);

#ifdef __cplusplus
}
#endif

#endif /* PAGEDATTN_C_MGPU_H */
