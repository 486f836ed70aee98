//===- TargetInfo.cpp - the chips the kernels are built for ---------------===//

#include "PagedAttn/Spec/TargetInfo.h"

#include <cctype>

using namespace paged_attn;

const std::vector<TargetInfo> &paged_attn::supportedTargets() {
  // PTX: the ISA version that introduced the chip; the default is what the
  // kernels want above that (7.4 for the cp.async L2 prefetch hint).
  static const std::vector<TargetInfo> targets = {
      {"sm_80", 80, 70, 74, 163 * 1024, false, 0},
      {"sm_86", 86, 71, 74, 99 * 1024, false, 0},
      {"sm_89", 89, 78, 78, 99 * 1024, false, 81},
      {"sm_90", 90, 78, 80, 227 * 1024, true, 78},
      {"sm_90a", 90, 80, 80, 227 * 1024, true, 78},
  };
  return targets;
}

const TargetInfo *paged_attn::lookupTarget(std::string_view chip) {
  for (const TargetInfo &t : supportedTargets())
    if (chip == t.chip)
      return &t;
  return nullptr;
}

const TargetInfo *paged_attn::targetForComputeCapability(int major,
                                                         int minor) {
  for (const TargetInfo &t : supportedTargets())
    if (t.computeCapability == major * 10 + minor)
      return &t;
  return nullptr;
}

std::string paged_attn::supportedChipList() {
  const std::vector<TargetInfo> &targets = supportedTargets();
  std::string list;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (i > 0)
      list += i + 1 == targets.size() ? " or " : ", ";
    list += targets[i].chip;
  }
  return list;
}

std::string paged_attn::ptxFeature(int version) {
  return "+ptx" + std::to_string(version);
}

int paged_attn::ptxVersionOf(std::string_view features) {
  size_t at = features.find("+ptx");
  if (at == std::string_view::npos)
    return 0;
  int version = 0, digits = 0;
  for (size_t i = at + 4; i < features.size() && std::isdigit(features[i]) &&
                          digits < 4;
       ++i, ++digits)
    version = version * 10 + (features[i] - '0');
  return version;
}

bool paged_attn::isKnownPTXVersion(int version) {
  // 7.0-7.8, 8.0-8.8 and 9.0: the versions LLVM 22's NVPTX back end lists.
  return (version >= 70 && version <= 78) || (version >= 80 && version <= 88) ||
         version == 90;
}
