"""Load a model: the reference checkpoint, our own (pruned) checkpoints, or a user's module.

``--model-def FILE.py:FACTORY`` names a Python file and a zero-argument function returning
an ``nn.Module``; ``--weights`` is a state dict (or one of our checkpoints). Pruned
checkpoints record the module shapes and head counts, so the factory's full-size model
is shrunk to match before the weights are loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from . import compat
from .resources import REFERENCE_WEIGHTS
from .checkpoint import is_svt_checkpoint, safe_torch_load, save_checkpoint
from .errors import SvtError
from .model import SpikingViT, SViTConfig
from .surgery import conform_to_state_dict, set_attributes



@dataclass
class LoadedModel:
    model: nn.Module
    model_def: str | None  # "FILE.py:FACTORY" for user models, None for our own class
    weights: Path
    attrs: dict = field(default_factory=dict)  # scalar attributes changed by pruning
    input_shape: tuple[int, int, int] | None = None
    # weight precision it deploys at (quant/): fp32, int8 or int4, or a map layer ->
    # int8/int4; the integer pixels' normalization (mean, std) comes with it, as the
    # firmware takes raw uint8 pixels
    precision: str | dict[str, str] = "fp32"
    normalize: tuple[float, float] | None = None

    def fingerprint(self) -> str:
        """Hash of the weights and structure: keys caches of everything derived from it."""
        what = (self.model_def, sorted(self.attrs.items()))
        if self.precision != "fp32":  # fp32 keeps the fingerprints (and caches) it had
            precision = self.precision if isinstance(self.precision, str) \
                else sorted(self.precision.items())
            what += (precision, self.normalize)
        h = hashlib.sha256(repr(what).encode())
        for k, v in self.model.state_dict().items():
            h.update(k.encode() + str(tuple(v.shape)).encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        config = self.model.current_config().to_dict() if isinstance(
            self.model, SpikingViT) else None
        meta = {"model_def": self.model_def, "attrs": self.attrs,
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "precision": dict(self.precision) if isinstance(self.precision, dict)
                else self.precision,
                "normalize": list(self.normalize) if self.normalize else None}
        save_checkpoint(path, self.model.state_dict(), config,
                        extra={**meta, **(extra or {})})


def import_factory(spec: str):
    """'path/to/file.py:build' -> the callable ``build``."""
    path_text, sep, factory = spec.rpartition(":")
    if not sep or not path_text or not factory:
        raise SvtError(f"--model-def {spec!r} must look like FILE.py:FACTORY")
    path = Path(path_text)
    if not path.is_file():
        raise SvtError(f"model definition {path} does not exist")
    name = "svt_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    # model files often import their siblings (e.g. a shared blocks.py)
    if str(path.resolve().parent) not in sys.path:
        sys.path.insert(0, str(path.resolve().parent))
    compat.install()  # published code imports spikingjelly.clock_driven and timm helpers
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise SvtError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise SvtError(f"{path} has no function {factory!r}")
    return fn


def _state_dict_of(obj, path: Path) -> tuple[dict, dict, dict]:
    """(state_dict, config or {}, extra or {}) from whatever torch.load returned."""
    if is_svt_checkpoint(obj):
        return obj["state_dict"], obj.get("config") or {}, obj.get("extra") or {}
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, {}, {}
    raise SvtError(f"{path} holds no state dict (expected torch.save(model.state_dict()))")


def _load_state(model: nn.Module, sd: dict, path: Path, where: str) -> None:
    result = None
    try:
        result = model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise SvtError(f"weights {path} do not fit the model from {where}: {detail[:200]}"
                       ) from None
    return result


def load_model(model_def: str | None = None, weights: str | Path | None = None) -> LoadedModel:
    weights_path = Path(weights) if weights is not None else REFERENCE_WEIGHTS
    if weights is None and model_def is not None:
        raise SvtError("--model-def needs --weights (a state dict saved with torch.save)")
    if weights is None and not weights_path.is_file():
        raise SvtError(f"the reference checkpoint {weights_path} is missing; train it with "
                       "python examples/train_reference.py or pass --weights")
    obj = safe_torch_load(weights_path, "weights file")
    sd, config, extra = _state_dict_of(obj, weights_path)
    model_def = model_def or extra.get("model_def")
    attrs = extra.get("attrs") or {}
    if model_def is None:
        if not config:
            raise SvtError(f"{weights_path} is a bare state dict; pass --model-def "
                           "FILE.py:FACTORY for the module it belongs to")
        try:
            model = SpikingViT(SViTConfig.from_dict(config))
        except (TypeError, KeyError, ValueError) as e:
            raise SvtError(f"{weights_path} has an invalid model config ({e})") from None
        where = "its stored config"
    else:
        try:
            model = import_factory(model_def)()
        except SvtError:
            raise
        except Exception as e:
            raise SvtError(f"calling {model_def} failed: {type(e).__name__}: {e}") from None
        if not isinstance(model, nn.Module):
            raise SvtError(f"{model_def} returned {type(model).__name__}, not an nn.Module")
        conform_to_state_dict(model, sd)
        set_attributes(model, attrs)
        where = model_def
    _load_state(model, sd, weights_path, where)
    model.eval()
    shape = extra.get("input_shape") or (
        [config["in_channels"], config["img_size"], config["img_size"]] if config else None)
    normalize = extra.get("normalize")
    return LoadedModel(model, model_def, weights_path, attrs,
                       tuple(shape) if shape else None, extra.get("precision") or "fp32",
                       tuple(normalize) if normalize else None)
