/*===- StandinDriver.h - the stand-in driver's test API -----------*- C -*-===*\
|*                                                                            *|
|* libpaged_attn_standin_cuda.so exports the CUDA driver entry points the     *|
|* runtime resolves (lib/Runtime/CudaDriver.cpp) and behaves like one device  *|
|* with an H100's limits, but runs no kernels: launches are checked against   *|
|* the limits and the PTX and then recorded; memory is host memory. Point     *|
|* PAGED_ATTN_CUDA_DRIVER at the library to make the runtime load it instead  *|
|* of libcuda.so.1. A test reaches these functions with dlopen(path,          *|
|* RTLD_NOLOAD) and dlsym, so it shares the runtime's instance.               *|
|*                                                                            *|
|* PAGED_ATTN_STANDIN_LOG=FILE also appends one line per launch, module      *|
|* load and unload, allocation, free and host registration to FILE.           *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef PAGEDATTN_TEST_STANDINDRIVER_H
#define PAGEDATTN_TEST_STANDINDRIVER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One accepted launch. */
typedef struct {
  char kernel[160];
  unsigned grid[3];
  unsigned block[3];
  unsigned dynamic_shared_bytes;
  void *stream;
  /* Launched by cuLaunchKernelEx with programmatic stream serialization. */
  int programmatic;
  /* Replayed by cuGraphLaunch (it was recorded during stream capture). */
  int from_graph;
  /* The kernel's parameter buffer (CU_LAUNCH_PARAM_BUFFER_POINTER, or the
   * kernelParams array packed the same way). */
  size_t param_bytes;
  /* The number of parameters the entry declares. */
  size_t param_count;
  unsigned char params[1024];
} paged_attn_standin_launch;

/* What the device reports and enforces; defaults are an H100 SXM's. */
typedef struct {
  char name[64];
  int multiprocessors;
  int compute_major, compute_minor;
  int shared_per_block;       /* without opt-in */
  int shared_per_block_optin; /* the most a kernel may opt into */
  int shared_per_multiprocessor;
  int threads_per_block;
  int threads_per_multiprocessor;
  int blocks_per_multiprocessor;
  int block_dims[3];
  int grid_dims[3];
  int registers_per_block;
  /* The newest PTX ISA the JIT reads, as 10 * major + minor (87: 8.7). */
  int ptx_isa;
} paged_attn_standin_device;

size_t paged_attn_standin_launch_count(void);
/* Copies launch `index` (0: the oldest since the last reset); 0 if none. */
int paged_attn_standin_get_launch(size_t index, paged_attn_standin_launch *out);
/* Forgets recorded launches (modules, allocations and settings stay). */
void paged_attn_standin_clear_launches(void);

void paged_attn_standin_get_device(paged_attn_standin_device *device);
/* Later checks use `device`; loaded modules and opt-ins stay. */
void paged_attn_standin_set_device(const paged_attn_standin_device *device);

/* The dynamic shared memory `kernel` was last opted into with
 * cuFuncSetAttribute, 0 if never, -1 if no loaded module defines it. */
int paged_attn_standin_opted_in_shared(const char *kernel);
/* Allocations made with cuMemAlloc and not yet freed. */
size_t paged_attn_standin_live_allocations(void);
/* Modules loaded and not unloaded. */
size_t paged_attn_standin_live_modules(void);

/* The next call to driver entry point `symbol` (as exported, e.g.
 * "cuMemAlloc_v2") returns `result` without doing anything. */
void paged_attn_standin_fail_next(const char *symbol, int result);
/* The same for the call after the next `calls` calls to `symbol`. */
void paged_attn_standin_fail_after(const char *symbol, int calls, int result);

#ifdef __cplusplus
}
#endif

#endif /* PAGEDATTN_TEST_STANDINDRIVER_H */
