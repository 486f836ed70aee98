//===- ExternDynamicSharedMemory.cpp - dynamic shared memory as .extern ---===//

#include "PagedAttn/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

namespace mlir {
namespace paged_attn {
#define GEN_PASS_DEF_EXTERNDYNAMICSHAREDMEMORY
#include "PagedAttn/Conversion/Passes.h.inc"
} // namespace paged_attn
} // namespace mlir

using namespace mlir;

namespace {
struct ExternDynamicSharedMemoryPass
    : public mlir::paged_attn::impl::ExternDynamicSharedMemoryBase<
          ExternDynamicSharedMemoryPass> {
  void runOnOperation() override {
    getOperation().walk([](LLVM::GlobalOp global) {
      auto array = dyn_cast<LLVM::LLVMArrayType>(global.getGlobalType());
      if (global.getAddrSpace() == NVVM::NVVMMemorySpace::Shared && array &&
          array.getNumElements() == 0 && global.getInitializer().empty() &&
          !global.getValueOrNull())
        global.setLinkage(LLVM::Linkage::External);
    });
  }
};
} // namespace
