//===- BufferizableOpInterfaceImpl.h - paged_attn bufferization -*- C++ -*-===//

#ifndef PAGEDATTN_DIALECT_PAGEDATTN_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H
#define PAGEDATTN_DIALECT_PAGEDATTN_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H

namespace mlir {
class DialectRegistry;
namespace paged_attn {
/// Lets One-Shot Bufferize turn the tensor form of paged_attn.decode into
/// the memref form writing a new buffer.
void registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry);
} // namespace paged_attn
} // namespace mlir

#endif
