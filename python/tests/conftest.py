import os
import shutil
import tempfile

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch):
    """Every test gets its own kernel cache directory."""
    d = tempfile.mkdtemp(prefix="paged-attn-cache-")
    monkeypatch.setenv("PAGED_ATTN_CACHE_DIR", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fp8_kernels(monkeypatch):
    """For the fp8 tests on compiled kernels: the GPU test matrix's fp8 set
    (test/gpu/matrix.py), PAGED_ATTN_KERNEL_DIR itself when it is that
    set's directory, else its sibling fp8 directory where there is one (the
    GPU suite points it at the auto set)."""
    kernels = os.environ.get("PAGED_ATTN_KERNEL_DIR")
    if not kernels or os.path.basename(os.path.normpath(kernels)) == "fp8":
        return
    sibling = os.path.join(os.path.dirname(os.path.normpath(kernels)), "fp8")
    if os.path.isdir(sibling):
        monkeypatch.setenv("PAGED_ATTN_KERNEL_DIR", sibling)
