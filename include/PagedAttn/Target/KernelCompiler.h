//===- KernelCompiler.h - decode kernels to PTX and a manifest --*- C++ -*-===//
//
// Compiles the kernels of a set of decodes and merges to one PTX module and
// describes them in a JSON manifest (entry names, parameter ABI, launch
// shape, split-KV workspace, the strategy each was built with) that the
// runtime reads.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TARGET_KERNELCOMPILER_H
#define PAGEDATTN_TARGET_KERNELCOMPILER_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"
#include "PagedAttn/Spec/AppendSpec.h"
#include "PagedAttn/Spec/KernelABI.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/JSON.h"

#include <string>

namespace mlir {
namespace paged_attn {

struct KernelCompileOptions {
  std::string chip = "sm_90";
  /// Empty: the chip's default PTX version.
  std::string features;
  int optLevel = 3;
  /// Code-generation options; fitted to the chip before the strategies are
  /// chosen. Their numWarps is every spec's.
  DecodeKernelOptions kernels;
};

struct CompiledKernels {
  std::string ptx;
  llvm::json::Value manifest = nullptr;
};

/// The ops one PTX module serves: decodes (each a kernel pair and its
/// page-table check), paged_attn.merge ops and paged_attn.append ops (one
/// kernel each).
struct KernelSet {
  SmallVector<DecodeSpec> decodes;
  SmallVector<::paged_attn::MergeSpec> merges;
  SmallVector<::paged_attn::AppendSpec> appends;

  bool empty() const {
    return decodes.empty() && merges.empty() && appends.empty();
  }
};

/// A module holding one function per spec, each with a memref-form decode
/// op. Fails (with a diagnostic) when a spec does not verify.
FailureOr<OwningOpRef<ModuleOp>> buildDecodeModule(MLIRContext *ctx,
                                                   ArrayRef<DecodeSpec> specs);
/// buildDecodeModule with a function per merge and append spec too, each
/// with a memref-form merge or append op.
FailureOr<OwningOpRef<ModuleOp>> buildKernelModule(MLIRContext *ctx,
                                                   const KernelSet &set);

/// The specs of all decode ops in `module`, without duplicates.
SmallVector<DecodeSpec> collectDecodeSpecs(ModuleOp module);
/// The specs of all decode, merge and append ops in `module`, without
/// duplicates.
KernelSet collectKernelSet(ModuleOp module);

/// The PTX of the gpu.binary ops in `module` (format=isa objects).
FailureOr<std::string> extractPTX(ModuleOp module);

/// Compiles the kernels of `set` to PTX; `ptxFileName` is recorded in the
/// manifest, whose "kernels" describe the decodes, "merges" the merges and
/// "appends" the appends.
/// Fails with a diagnostic for a bad chip, PTX features or option, or a
/// spec that breaks a rule of its op.
FailureOr<CompiledKernels> compileKernels(MLIRContext *ctx,
                                          const KernelSet &set,
                                          const KernelCompileOptions &options,
                                          StringRef ptxFileName);
/// compileKernels of decodes alone.
FailureOr<CompiledKernels>
compileDecodeKernels(MLIRContext *ctx, ArrayRef<DecodeSpec> specs,
                     const KernelCompileOptions &options,
                     StringRef ptxFileName);

/// The version string recorded in manifests and cache keys.
std::string getCompilerVersion();

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_TARGET_KERNELCOMPILER_H
