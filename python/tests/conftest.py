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
