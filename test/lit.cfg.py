# -*- Python -*-

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "PagedAttn"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Inputs",
                   "gpu", "unit"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.paged_attn_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(
    ("%paged_attn_plugin",
     os.path.join(config.paged_attn_lib_dir, "PagedAttnDialectPlugin.so")))
config.substitutions.append(("%paged_attn_src", config.paged_attn_src_root))
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%cmake", config.cmake_command))
config.substitutions.append(("%mlir_dir", config.mlir_dir))
config.substitutions.append(("%paged_attn_obj", config.paged_attn_obj_root))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.paged_attn_tools_dir, config.llvm_tools_dir]
tools = ["paged-attn-opt", "paged-attn-compile", "paged-attn-run", "mlir-opt",
         "mlir-translate", "mlir-runner"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# Debian names the stock tool mlir-opt-22 and also installs it as
# <llvm>/bin/mlir-opt.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

if config.ptxas and os.path.exists(config.ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", config.ptxas))
