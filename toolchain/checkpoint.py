"""Checkpoint files: weights plus the configuration needed to rebuild the model.

Everything is saved as plain tensors, strings and numbers so it loads with
``torch.load(..., weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .errors import SvtError

FORMAT = "svt-deploy-checkpoint/1"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in the target's directory (same filesystem, so the rename is atomic),
    with the permissions a plain open() would have given (mkstemp makes them 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _umask_mode())
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` and rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safe_torch_load(path: str | Path, what: str = "checkpoint"):
    """``torch.load(weights_only=True)`` with a one-line error for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise SvtError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SvtError(f"{what} {path} is corrupt or not a PyTorch weights file "
                       f"({reason[:120]}); re-export it with torch.save(model.state_dict())"
                       ) from None


def save_checkpoint(path: str | Path, state_dict: dict, config: dict,
                    extra: dict | None = None) -> None:
    payload = {"format": FORMAT, "config": config,
               "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()}}
    if extra:
        payload["extra"] = extra
    atomic_torch_save(payload, path)


def is_svt_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT
