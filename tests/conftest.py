"""Test set-up: without a CUDA GPU, Triton kernels run in its interpreter on the CPU.

``TRITON_INTERPRET`` must be set before any kernel is defined, that is before anything
imports ``models.neurons.triton_backend``; pytest imports this file first.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """Run on one CPU thread (training tests whose subprocesses share the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
