//===- PtxInfo.h - what the stand-in driver reads from PTX ------*- C++ -*-===//
//
// The stand-in driver compiles nothing, but it checks what the real JIT and
// launch checks would: that the image is PTX for a target the device runs,
// which entries it defines, how large each entry's parameter space is, its
// thread-count directives and the static shared memory it uses.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TEST_STANDINDRIVER_PTXINFO_H
#define PAGEDATTN_TEST_STANDINDRIVER_PTXINFO_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace standin {

struct PtxParam {
  size_t bytes = 0, alignment = 1;
};

struct PtxEntry {
  std::vector<PtxParam> params;
  /// Bytes of the parameter space, each parameter at its alignment.
  size_t paramBytes = 0;
  /// .maxntid / .reqntid as a thread count (0: none given).
  unsigned maxThreads = 0;
  unsigned requiredThreads[3] = {0, 0, 0};
  /// Module-scope and entry-scope .shared arrays the entry mentions.
  size_t staticSharedBytes = 0;
  /// Whether the entry refers to an `.extern .shared` (dynamic) array.
  bool usesDynamicShared = false;
};

struct PtxModule {
  int versionMajor = 0, versionMinor = 0;
  /// sm_XY as XY (sm_90a as 90).
  int targetSM = 0;
  std::map<std::string, PtxEntry> entries;
};

/// Scans `text`. On failure returns false with a ptxas-like message.
bool scanPtx(const std::string &text, PtxModule &module, std::string &error);

} // namespace standin

#endif // PAGEDATTN_TEST_STANDINDRIVER_PTXINFO_H
