// Parses, verifies and prints paged_attn IR through the installed dialect
// library, and rejects a bad op with its verifier's message; calls the
// installed runtime and mgpu libraries without a driver.
#include "PagedAttn-c/Mgpu.h"
#include "PagedAttn-c/Runtime.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/raw_ostream.h"

static const char *kGood = R"(
func.func @f(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>,
             %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>,
             %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>,
         tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32>
       -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
})";

static const char *kBad = R"(
func.func @f(%q: tensor<?x30x128xbf16>, %k: tensor<?x16x8x128xbf16>,
             %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>,
             %sl: tensor<?xi32>) -> tensor<?x30x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
       : tensor<?x30x128xbf16>, tensor<?x16x8x128xbf16>,
         tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32>
       -> tensor<?x30x128xbf16>
  return %o : tensor<?x30x128xbf16>
})";

int main() {
  mlir::DialectRegistry registry;
  registry.insert<mlir::paged_attn::PagedAttnDialect, mlir::func::FuncDialect>();
  mlir::MLIRContext ctx(registry);
  auto good = mlir::parseSourceString<mlir::ModuleOp>(kGood, &ctx);
  if (!good || mlir::failed(mlir::verify(*good)))
    return 1;
  good->print(llvm::outs());
  llvm::outs() << "\n";
  mlir::ScopedDiagnosticHandler handler(&ctx, [](mlir::Diagnostic &d) {
    llvm::outs() << "diagnostic: " << d.str() << "\n";
    return mlir::success();
  });
  auto bad = mlir::parseSourceString<mlir::ModuleOp>(kBad, &ctx);
  if (bad)
    return 1;
  // The runtime's C API links and reports plainly without a GPU.
  paged_attn_library lib = nullptr;
  paged_attn_library_load("/nonexistent.json", &lib);
  llvm::outs() << "runtime: " << paged_attn_last_error() << "\n";
  // So do the mgpu* functions, on stderr, and they count the failure.
  llvm::outs().flush();
  if (mgpuStreamCreate() != nullptr)
    return 1;
  llvm::outs() << "mgpu errors: " << paged_attn_mgpu_error_count() << "\n";
  return 0;
}
