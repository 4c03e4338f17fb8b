"""ANN-to-SNN conversion: the zoo's ReLU or QCFS twins as IF networks (soft reset), with
per-layer thresholds from activation statistics or from the trained QCFS clip, and their
evaluation over many time steps in chunks with the state carried."""

from models.conversion.chunks import (
    ChunkedNetwork,
    forward_in_chunks,
    run_chunk,
    stateful_modules,
)
from models.conversion.convert import (
    ConversionError,
    GatedMaxPool,
    calibrate_thresholds,
    check_convertible,
    convert,
    gate_max_pools,
)

__all__ = [
    "ChunkedNetwork",
    "ConversionError",
    "GatedMaxPool",
    "calibrate_thresholds",
    "check_convertible",
    "convert",
    "forward_in_chunks",
    "gate_max_pools",
    "run_chunk",
    "stateful_modules",
]
