"""Checkpoints: everything needed to resume training, written atomically (a temporary file, then a
rename) and read back with ``torch.load(weights_only=True)``, so no code in a file can run; and the
trained network of a checkpoint, ready for inference (:func:`load_model`).

Notebooks: 05 (appendix 05b) teaches it; 07 uses it.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .model import MODEL_DEFAULTS, FaceUNet
from .runconfig import RunConfig

__all__ = ["save_checkpoint", "load_checkpoint", "config_from_dict", "load_model", "rng_state", "restore_rng_state"]


def rng_state() -> dict[str, Any]:
    """The random number generators' states (torch, Python's ``random``, CUDA where present): part of
    every checkpoint, so a resumed run draws what an uninterrupted one would."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the generators back to what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, config: RunConfig, epoch: int, history: Mapping[str, list[float]],
                    **extra: Any) -> Path:
    """Write everything needed to resume after ``epoch`` finished epochs, as tensors and plain
    containers only (``torch.load(weights_only=True)`` reads it back): the state_dicts of model,
    optimizer, LR scheduler and grad scaler, the config as a dict, the epoch, the history and the RNG
    states. ``extra`` holds more plain values (e.g. the model's constructor arguments). Written to a
    temporary file first, then renamed, so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "config": config.as_dict(),
        "epoch": int(epoch),
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "rng": rng_state(),
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
        os.replace(tmp, path)  # atomic: `path` is the old checkpoint or the new one, never half of one
    except BaseException:  # KeyboardInterrupt included: drop the partial file, keep the last good one
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's dict, read with ``torch.load(weights_only=True)``: no arbitrary code can run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != 1:
        raise ValueError(f"{path}: not a checkpoint written by helpers.checkpoints.save_checkpoint")
    return state


def config_from_dict(d: Mapping[str, Any]) -> RunConfig:
    """The :class:`RunConfig` saved in a checkpoint (``config.as_dict()``) rebuilt."""
    d = dict(d)
    d["image_size"] = tuple(d["image_size"])
    return RunConfig(**d)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FaceUNet, RunConfig]:
    """The trained network of a checkpoint, in eval mode on ``device``, and its run config."""
    state = load_checkpoint(path)
    model = FaceUNet(**state.get("model_kwargs", MODEL_DEFAULTS))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config_from_dict(state["config"])
