//===- AppendToLoops.h - paged_attn.append to scalar loops ------*- C++ -*-===//

#ifndef PAGEDATTN_LIB_CONVERSION_PAGEDATTNTOLOOPS_APPENDTOLOOPS_H
#define PAGEDATTN_LIB_CONVERSION_PAGEDATTNTOLOOPS_APPENDTOLOOPS_H

#include "mlir/IR/PatternMatch.h"

namespace mlir {
namespace paged_attn {

/// Rewrites memref-form paged_attn.append ops into scf loops.
void populateAppendToLoopsPatterns(RewritePatternSet &patterns);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_LIB_CONVERSION_PAGEDATTNTOLOOPS_APPENDTOLOOPS_H
