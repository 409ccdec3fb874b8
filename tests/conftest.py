import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
# Under pytest-xdist every worker is a process: share the cores instead of oversubscribing them
# (two workers × two threads on two cores made the training tests several times slower).
workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
