import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import torch_imbalance as ti

sys.path.insert(0, os.path.dirname(__file__))
# Under pytest-xdist every worker is a process: share the cores instead of oversubscribing them
# (two workers × two threads on two cores made the training tests several times slower).
workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
# The decoded-image caches of the tests' runs go to a folder of this session, not the user's.
os.environ["TORCH_IMBALANCE_CACHE"] = tempfile.mkdtemp(prefix="torch-imbalance-cache-")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


#: Where the compiled kernels are under test; elsewhere (the harness: data, models, engine, CLI)
#: the losses run on the eager driver, which computes the same function: each compiled
#: configuration costs seconds to build on a fresh machine. A harness test that should run them
#: compiled, as a user's training does, is marked ``@pytest.mark.compiled``.
LOSS_CORE = {"functional", "losses", "test_compile.py", "test_cuda.py"}


@pytest.fixture(autouse=True)
def _harness_runs_eager(request, monkeypatch):
    parts = set(Path(str(request.node.fspath)).parts)
    if parts & LOSS_CORE or request.node.get_closest_marker("compiled"):
        yield
        return
    monkeypatch.setenv("TORCH_IMBALANCE_COMPILE", "never")  # subprocesses (CLI, DDP) too
    mode = ti.get_compile_mode()
    ti.set_compile_mode("never")
    yield
    ti.set_compile_mode(mode)
