# Sanitizers and fuzzing instrumentation for the project's own code. LLVM
# and MLIR come prebuilt and stay uninstrumented; everything compiled here
# (libraries, tools, tests) gets the flags.
#
#   -DPAGED_ATTN_SANITIZERS="address;undefined"   (scripts/test-sanitizers.sh)
#   -DPAGED_ATTN_ENABLE_LIBFUZZER=ON              (clang only)

set(PAGED_ATTN_SANITIZERS "" CACHE STRING
    "Sanitizers for the project's code, e.g. address;undefined")
option(PAGED_ATTN_ENABLE_LIBFUZZER
       "Build paged-attn-libfuzzer and instrument the project for libFuzzer"
       OFF)

if(PAGED_ATTN_SANITIZERS)
  list(JOIN PAGED_ATTN_SANITIZERS "," sanitizers)
  # Every report is an error; vptr needs RTTI, which LLVM-style targets
  # build without.
  add_compile_options(-fsanitize=${sanitizers} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${sanitizers})
  if("undefined" IN_LIST PAGED_ATTN_SANITIZERS)
    add_compile_options(-fno-sanitize=vptr)
  endif()
endif()

if(PAGED_ATTN_ENABLE_LIBFUZZER)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "PAGED_ATTN_ENABLE_LIBFUZZER needs clang")
  endif()
  # Coverage for libFuzzer's guidance; every link then needs the runtime's
  # coverage callbacks, which the same flag pulls in.
  add_compile_options(-fsanitize=fuzzer-no-link)
  add_link_options(-fsanitize=fuzzer-no-link)
endif()
