"""Load stage: the model and the data a command works on, checked against each other."""

from __future__ import annotations

from dataclasses import dataclass

from ..data import Dataset, load_dataset
from ..errors import SvtError
from ..loading import LoadedModel, load_model
from ..runtime import configure

DEFAULT_DATA = "Fashion-MNIST (/usr/share/datasets/fashion-mnist)"


@dataclass(frozen=True)
class ModelInputs:
    """--model-def, --weights, --data, --normalize, and where the model runs (--device,
    --batch-size). None means the default: the reference SViT and Fashion-MNIST."""

    model_def: str | None = None
    weights: str | None = None
    data: str | None = None
    normalize: tuple[float, float] | None = None
    device: str = "auto"
    batch_size: int = 250
    precision: str | None = None  # fp32 | int8 | int4; None: the checkpoint's


    @property
    def data_label(self) -> str:
        return self.data or DEFAULT_DATA


def load_inputs(inputs: ModelInputs, need_data: bool = True
                ) -> tuple[LoadedModel, Dataset | None]:
    """(LoadedModel, Dataset or None) from the inputs; the model's input shape is the data's."""
    configure(inputs.device, inputs.batch_size)
    ds = load_dataset(inputs.data, tuple(inputs.normalize) if inputs.normalize else None) \
        if need_data else None
    loaded = load_model(inputs.model_def, inputs.weights)
    if ds is not None:
        if loaded.input_shape and tuple(loaded.input_shape) != ds.input_shape:
            raise SvtError(f"the model expects {tuple(loaded.input_shape)} images but the data "
                           f"has {ds.input_shape}; pass the --data it was trained on")
        loaded.input_shape = ds.input_shape
    if inputs.precision is not None:
        from ..prune.precision import at_precision
        loaded = at_precision(loaded, inputs.precision,
                              ds.normalize if ds is not None else loaded.normalize)
    return loaded, ds
