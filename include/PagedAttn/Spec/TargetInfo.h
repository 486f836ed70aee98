//===- TargetInfo.h - the chips the kernels are built for -------*- C++ -*-===//
//
// One table of what the compiler needs to know of each NVIDIA chip: the PTX
// versions it can be targeted with, its shared memory, and the features the
// kernels use where the chip (and PTX version) has them. The pipeline, the
// compiler, the tools and Python read it; adding a chip is a row here.
// Free of LLVM and MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_SPEC_TARGETINFO_H
#define PAGEDATTN_SPEC_TARGETINFO_H

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paged_attn {

struct TargetInfo {
  /// "sm_90"; with an "a" suffix for the architecture-specific variant.
  const char *chip;
  /// Major * 10 + minor: 90 for sm_90 and sm_90a.
  int computeCapability;
  /// The lowest PTX ISA version (major * 10 + minor) that can target the
  /// chip, and the one the kernels are compiled with by default (7.4 at
  /// least, for the cp.async L2 prefetch hint).
  int minPTXVersion;
  int defaultPTXVersion;
  /// Shared memory one CTA may opt into, in bytes (the CUDA programming
  /// guide's table of compute capabilities).
  int64_t sharedMemoryPerBlockOptIn;
  /// griddepcontrol: programmatic dependent launch (sm_90 and later).
  bool programmaticLaunch;
  /// The PTX version from which the back end emits cvt.rn.f16x2.e4m3x2
  /// and .e5m2x2 (fp8 pairs to f16 in one instruction) for the chip: 8.1
  /// on sm_89, 7.8 on sm_90; 0 where the chip has no such instruction.
  int fp8ConversionPTXVersion;
};

/// The supported chips, oldest first.
const std::vector<TargetInfo> &supportedTargets();
/// The row of `chip`, or null for a chip the kernels are not built for.
const TargetInfo *lookupTarget(std::string_view chip);
/// The chip of a device of compute capability `major`.`minor` (its plain
/// variant), or null.
const TargetInfo *targetForComputeCapability(int major, int minor);
/// "sm_80, sm_86, sm_89, sm_90 or sm_90a", for messages and help.
std::string supportedChipList();

/// The PTX ISA version the cp.async L2 prefetch-size hint needs.
constexpr int kL2PrefetchHintPTXVersion = 74;

/// Whether the compiler (LLVM 22's NVPTX back end) knows PTX ISA `version`
/// (7.0 to 9.0, as LLVM numbers them).
bool isKnownPTXVersion(int version);

/// "+ptx80" for 80.
std::string ptxFeature(int version);
/// The PTX version `features` ask for ("+ptx80" gives 80); 0 when they
/// name none.
int ptxVersionOf(std::string_view features);

} // namespace paged_attn

#endif // PAGEDATTN_SPEC_TARGETINFO_H
