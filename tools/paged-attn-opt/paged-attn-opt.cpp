//===- paged-attn-opt.cpp - paged_attn optimizer driver -------------------===//
//
// mlir-opt for the paged_attn dialect: its dialect and passes plus the upstream
// dialects and passes that the GPU and CPU lowerings go through.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::paged_attn::registerAllDialects(registry);
  mlir::paged_attn::registerAllPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "PagedAttn optimizer driver\n", registry));
}
