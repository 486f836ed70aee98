"""test/gpu/matrix.py (the GPU test matrix and its kernel sets), loaded from
the source tree for the tests that check their configs against it."""
import importlib.util
import os


def load():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "test", "gpu",
                        "matrix.py")
    spec = importlib.util.spec_from_file_location("paged_attn_matrix", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
