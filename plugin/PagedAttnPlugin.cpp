//===- PagedAttnPlugin.cpp - paged_attn as an mlir-opt plugin -------------===//
//
// `mlir-opt --load-dialect-plugin=PagedAttnDialectPlugin.so` parses and
// verifies paged_attn IR; `--load-pass-plugin=` on the same library adds
// the paged_attn passes and pipelines.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/Passes.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"
#include "PagedAttn/Dialect/PagedAttn/Transforms/BufferizableOpInterfaceImpl.h"
#include "PagedAttn/Pipelines/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/Plugins/DialectPlugin.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "llvm/Config/llvm-config.h"

using namespace mlir;

extern "C" LLVM_ATTRIBUTE_WEAK DialectPluginLibraryInfo
mlirGetDialectPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "PagedAttn", LLVM_VERSION_STRING,
          [](DialectRegistry *registry) {
            registry->insert<paged_attn::PagedAttnDialect>();
            paged_attn::registerBufferizableOpInterfaceExternalModels(
                *registry);
          }};
}

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "PagedAttnPasses", LLVM_VERSION_STRING,
          []() {
            paged_attn::registerPagedAttnConversionPasses();
            paged_attn::registerPagedAttnPipelines();
          }};
}
