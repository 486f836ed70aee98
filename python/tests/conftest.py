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


def _use_kernel_set(monkeypatch, name):
    """Points PAGED_ATTN_KERNEL_DIR at the GPU test matrix's set `name`
    (test/gpu/matrix.py): itself when it is that set's directory, else its
    sibling `name` directory where there is one (the GPU suite points it at
    the auto set)."""
    kernels = os.environ.get("PAGED_ATTN_KERNEL_DIR")
    if not kernels or os.path.basename(os.path.normpath(kernels)) == name:
        return
    sibling = os.path.join(os.path.dirname(os.path.normpath(kernels)), name)
    if os.path.isdir(sibling):
        monkeypatch.setenv("PAGED_ATTN_KERNEL_DIR", sibling)


@pytest.fixture
def fp8_kernels(monkeypatch):
    """For the fp8 tests on compiled kernels: the matrix's fp8 set."""
    _use_kernel_set(monkeypatch, "fp8")


@pytest.fixture
def append_kernels(monkeypatch):
    """For the append tests on compiled kernels: the matrix's append set
    (its appends and the decodes of the append-then-decode loop)."""
    _use_kernel_set(monkeypatch, "append")
