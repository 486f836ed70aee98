//===- InitAll.h - register PagedAttn and what it lowers through -*- C++
//-*-===//

#ifndef PAGEDATTN_INITALL_H
#define PAGEDATTN_INITALL_H

namespace mlir {
class DialectRegistry;
namespace paged_attn {

/// Registers the paged_attn dialect, the upstream dialects its lowerings
/// produce and consume, and the interfaces those lowerings need (LLVM
/// conversion, bufferization, NVVM target and translation).
void registerAllDialects(DialectRegistry &registry);

/// Registers paged_attn's passes and pipelines and the upstream passes a
/// user needs around them.
void registerAllPasses();

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_INITALL_H
