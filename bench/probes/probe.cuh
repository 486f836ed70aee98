// probe.cuh - what the probes in this folder share: CUDA error checks,
// shared-memory addresses for inline PTX, and median timing.
#ifndef PAGEDATTN_BENCH_PROBES_PROBE_CUH
#define PAGEDATTN_BENCH_PROBES_PROBE_CUH

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                               \
  do {                                                                         \
    cudaError_t err = (x);                                                     \
    if (err != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,                  \
                   cudaGetErrorString(err));                                   \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

/// The 32-bit shared-memory address of `p`, as cp.async and mbarriers take.
__device__ __forceinline__ unsigned smemAddress(const void *p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

/// The median over `reps` samples of the GPU time (µs, CUDA events on
/// `stream`) of what `launch` enqueues on `stream`, after three samples
/// untimed; launch errors end the program.
template <typename Launch>
float medianMicroseconds(cudaStream_t stream, Launch launch, int reps) {
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  std::vector<float> samples;
  for (int r = 0; r < reps + 3; ++r) {
    CHECK(cudaEventRecord(start, stream));
    launch();
    CHECK(cudaEventRecord(stop, stream));
    CHECK(cudaEventSynchronize(stop));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (r >= 3)
      samples.push_back(ms * 1000.f);
  }
  CHECK(cudaGetLastError());
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

#endif // PAGEDATTN_BENCH_PROBES_PROBE_CUH
