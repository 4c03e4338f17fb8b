"""Test set-up: without a CUDA GPU, Triton kernels run in its interpreter on the CPU.

``TRITON_INTERPRET`` must be set before any kernel is defined, that is before anything
imports ``models.neurons.triton_backend``; pytest imports this file first.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
