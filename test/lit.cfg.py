# -*- Python -*-

import os
import subprocess

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

# The host programs (examples/host) and what runs them without a GPU: the
# mgpu library, the stand-in driver, mlir-runner's utility libraries.
config.substitutions.append(
    ("%mgpu_lib", os.path.join(config.paged_attn_lib_dir, "libpaged_attn_mgpu.so")))
config.substitutions.append(
    ("%standin_driver",
     os.path.join(config.paged_attn_lib_dir, "libpaged_attn_standin_cuda.so")))
config.substitutions.append(
    ("%runner_utils",
     ",".join(os.path.join(config.llvm_lib_dir, lib) for lib in
              ["libmlir_runner_utils.so", "libmlir_c_runner_utils.so"])))
if config.host_programs:
    config.available_features.add("host-programs")
# examples/host/check_runner_output.py needs numpy.
if subprocess.call([config.python_executable, "-c", "import numpy"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
    config.available_features.add("numpy")

if config.ptxas and os.path.exists(config.ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", config.ptxas))
