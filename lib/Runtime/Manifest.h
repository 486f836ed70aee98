//===- Manifest.h - kernels as a manifest describes them --------*- C++ -*-===//
//
// What the runtime keeps of one manifest entry: of "kernels", the config
// (read with the Spec's specFromConfig, so it obeys the op's rules), the
// three kernels' names, block sizes and parameters (the Spec's, checked
// against the manifest's), and the launch settings of the decode kernel;
// of "merges" and "appends", the op's config and its kernel.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_LIB_RUNTIME_MANIFEST_H
#define PAGEDATTN_LIB_RUNTIME_MANIFEST_H

#include "LaunchParams.h"

#include "PagedAttn/Runtime/Runtime.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paged_attn {

/// One kernel of an entry.
struct KernelEntry {
  std::string name;
  /// Threads per CTA (the manifest's block[0]).
  int64_t block = 0;
  /// The Spec's parameters in launch order, bound to the runtime's values.
  std::vector<detail::BoundParam> params;
};

/// One kernel pair (and its check kernel) from a manifest. Data only: the
/// public KernelLibrary::find returns one, so it keeps default visibility,
/// and has no code for exports.map to export.
struct KernelSpec {
  KernelConfig config;
  KernelEntry decode, merge, check;
  int64_t ctasPerKVHead = 1;
  int64_t tokensPerIteration = 1;
  /// Dynamic shared memory of the decode kernel (0 in older manifests).
  int64_t decodeDynamicSharedBytes = 0;
  /// The decode kernel waits on griddepcontrol before it touches memory,
  /// so it may be launched while the grid before it in the stream drains.
  bool decodeProgrammaticLaunch = false;
  /// The merge kernel waits on griddepcontrol and may be launched while
  /// the decode grid runs.
  bool mergeProgrammaticLaunch = false;
  /// The decode kernel computes with mma.sync (the config's tensor_cores).
  bool tensorCores = false;
  std::shared_ptr<const std::string> ptx; // NUL-terminated
  /// Never reused within a process, unlike addresses: cache keys.
  uint64_t id = 0, ptxId = 0;
};

/// A paged_attn.merge kernel from a manifest's "merges".
struct MergeKernelSpec {
  MergeConfig config;
  KernelEntry merge;
  /// Heads one CTA merges: the grid's x is num_heads / rowsPerCTA, rounded
  /// up.
  int64_t rowsPerCTA = 1;
  std::shared_ptr<const std::string> ptx; // NUL-terminated
  uint64_t id = 0, ptxId = 0;
};

/// A paged_attn.append kernel from a manifest's "appends".
struct AppendKernelSpec {
  AppendConfig config;
  KernelEntry append;
  /// (token, KV head) rows one CTA writes: the grid's x is T * num_kv_heads
  /// / rowsPerCTA, rounded up.
  int64_t rowsPerCTA = 1;
  std::shared_ptr<const std::string> ptx; // NUL-terminated
  uint64_t id = 0, ptxId = 0;
};

} // namespace paged_attn

#endif // PAGEDATTN_LIB_RUNTIME_MANIFEST_H
