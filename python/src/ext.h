//===- ext.h - What paged_attn._ext's sources share -------------*- C++ -*-===//
//
// ext.cpp binds the runtime (and the compiler); torch_calls.cpp takes
// decode() and merge() calls on torch tensors without Python's
// description of each tensor. Both raise runtime failures the same way and
// share the bound decoders and mergers.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_PYTHON_EXT_H
#define PAGEDATTN_PYTHON_EXT_H

#include "PagedAttn/Runtime/Runtime.h"

#include <nanobind/nanobind.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace paged_attn::python {

/// Raises `s`: ValueError for InvalidArgument, else paged_attn.PagedAttnError
/// (set by Python at import), carrying the runtime's message.
[[noreturn]] void raise(const Status &s);

inline void check(const Status &s) {
  if (!s)
    raise(s);
}

/// _ext.Decoder. Shared: the torch-call registry keeps the decoders
/// Python made (see registerDecoder).
struct PyDecoder {
  std::shared_ptr<const Decoder> decoder;
};

/// _ext.Merger, shared as PyDecoder is.
struct PyMerger {
  std::shared_ptr<const Merger> merger;
};

/// _ext.Appender, shared as PyDecoder is.
struct PyAppender {
  std::shared_ptr<const Appender> appender;
};

/// decode()'s host_seq_lens when they are a list or tuple of ints, a
/// one-dimensional NumPy array (any object with the buffer protocol) of
/// int32 or int64, or a CPU torch tensor of those, of `batch` entries in
/// [0, INT32_MAX]: into `lengths`, without a Python object per entry. False
/// for anything else (torch_calls.cpp).
bool readHostSeqLens(nanobind::handle obj, int64_t batch,
                     std::vector<int32_t> *lengths);

/// host_seq_lens as readHostSeqLens reads them, or as Python's
/// _host_seq_lens takes them where it does not; raises that function's
/// ValueError for lengths it refuses.
std::vector<int32_t> hostSeqLensOf(nanobind::handle obj, int64_t batch);

/// Adds set_torch, register_decoder, register_merger, decode_torch and
/// merge_torch to the module (torch_calls.cpp).
void defineTorchCalls(nanobind::module_ &m);

} // namespace paged_attn::python

#endif // PAGEDATTN_PYTHON_EXT_H
