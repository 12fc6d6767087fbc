"""The integer reference as the rest of the tool sees a model: the IR a loaded model
deploys as (quantized when its precision is integer), and a module whose forward is that
IR's integer arithmetic, so every accuracy (validation checks, sensitivity profiles, the
reported test accuracy, the host and device comparisons) measures what the C computes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..graph import IR
from ..ir import extract_ir, run_ir
from ..loading import LoadedModel
from .integer import InputQuant
from .quantize import quantize_ir


def deployed_ir(loaded: LoadedModel, input_shape) -> IR:
    """The IR of ``loaded`` at its precision (``loaded.precision``)."""
    ir = extract_ir(loaded.model, tuple(input_shape))
    if loaded.precision != "fp32":
        quantize_ir(ir, loaded.precision, InputQuant.of(loaded.normalize))
    return ir


class IntegerReference(nn.Module):
    """Runs a quantized IR: int64 scores, exactly the generated C's."""

    def __init__(self, ir: IR):
        super().__init__()
        self.ir = ir

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return run_ir(self.ir, images.cpu())


def reference_model(loaded: LoadedModel, input_shape=None) -> nn.Module:
    """What to evaluate for ``loaded``: its torch module in fp32, its integer arithmetic
    otherwise."""
    if loaded.precision == "fp32":
        return loaded.model
    shape = input_shape or loaded.input_shape
    return IntegerReference(deployed_ir(loaded, shape))


def c_images(loaded: LoadedModel, images: torch.Tensor) -> np.ndarray:
    """Float ``images`` (as the dataset gives them) as ``loaded``'s C takes them: float32,
    or an integer model's uint8 pixels."""
    if loaded.precision == "fp32":
        return images.numpy().astype(np.float32)
    return InputQuant.of(loaded.normalize).pixels(images).numpy().astype(np.uint8)
