//===- KernelCompiler.h - decode kernels to PTX and a manifest --*- C++ -*-===//
//
// Compiles decode kernel pairs for a set of configs to one PTX module and
// describes them in a JSON manifest (entry names, parameter ABI, launch
// shape, split-KV workspace) that the runtime reads.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TARGET_KERNELCOMPILER_H
#define PAGEDATTN_TARGET_KERNELCOMPILER_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/JSON.h"

#include <string>

namespace mlir {
namespace paged_attn {

struct KernelCompileOptions {
  std::string chip = "sm_90";
  /// Empty: the lowest PTX version the chip needs.
  std::string features;
  int optLevel = 3;
};

struct CompiledKernels {
  std::string ptx;
  llvm::json::Value manifest = nullptr;
};

/// A module holding one function per config, each with a memref-form decode
/// op. Fails (with a diagnostic) when a config does not verify.
FailureOr<OwningOpRef<ModuleOp>>
buildDecodeModule(MLIRContext *ctx, ArrayRef<DecodeKernelConfig> configs);

/// The configs of all decode ops in `module`, without duplicates.
SmallVector<DecodeKernelConfig>
collectDecodeConfigs(ModuleOp module, const DecodeKernelOptions &options);

/// The PTX of the gpu.binary ops in `module` (format=isa objects).
FailureOr<std::string> extractPTX(ModuleOp module);

/// Compiles `configs` to PTX; `ptxFileName` is recorded in the manifest.
FailureOr<CompiledKernels>
compileDecodeKernels(MLIRContext *ctx, ArrayRef<DecodeKernelConfig> configs,
                     const KernelCompileOptions &options,
                     StringRef ptxFileName);

/// The version string recorded in manifests and cache keys.
std::string getCompilerVersion();

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_TARGET_KERNELCOMPILER_H
