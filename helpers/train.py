"""Training, evaluation, checkpoints and inference for the per-pixel face classifier (notebook 05).

Three splits (``build_loaders`` -> :class:`Loaders`): the network learns on ``train``; every choice
(loss weights, model size, the colour baseline's bins) and every per-epoch figure (``val_*``) uses
``val``; ``test`` is scored once, by :func:`final_test`, after all choices are made, so its figures
are not flattered by having been chosen on. The network's output, ``sigmoid(logit)``, is a face
SCORE: trained with a positive weight and a Dice term it ranks pixels but is not a calibrated
probability.

One code path for every device: CUDA gets mixed precision (bf16 where supported, else fp16 with a
gradient scaler), ``channels_last`` and ``cudnn.benchmark``; a CPU runs the same loop in float32.
Images leave the DataLoader as ``uint8`` and are converted and normalised on the device.

Notebooks: 05 teaches it; 07, 08 use it.
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import (MIN_REGION_PIXELS, BoxRecall, FaceCounts, PixelCounts, as_face_mask, box_recall, face_counts,
                      per_image_iou)
from .model import FaceUNet
from .runconfig import RunConfig

__all__ = [
    "MEAN", "STD", "MODEL_DEFAULTS", "History", "TrainResult", "Evaluation", "FaceLoss", "Loaders",
    "normalise", "prepare_batch", "face_pixel_fraction", "positive_weight",
    "build_loaders", "check_loaders", "build_model", "build_optimizer", "train_step", "train_one_epoch", "evaluation_table", "amp_settings",
    "evaluate", "final_test", "split_distractors", "train", "save_checkpoint",
    "load_checkpoint", "config_from_dict", "load_model", "predict",
]

#: Per-channel mean and standard deviation used to normalise images on the device (ImageNet's
#: statistics: a common, documented choice; the network is trained from scratch, so any fixed values
#: that bring the inputs near zero mean and unit spread would do).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: The network's size. See helpers/model.py for why (receptive field vs. rescaled face size) and how
#: it was chosen (on TEST IoU, before the validation split existed; ``python -m helpers.lab.tune`` compares
#: widths on validation).
MODEL_DEFAULTS: dict[str, Any] = {"base_channels": 8, "levels": 4, "max_channels": 64, "norm": "batch"}

#: Keys of the per-epoch log; each holds one value per finished epoch. ``val_*``: the VALIDATION split.
HISTORY_KEYS = ("epoch", "lr", "train_loss", "val_loss", "val_iou", "val_dice", "val_precision",
                "val_recall", "seconds", "val_seconds", "wait_fraction")

#: The per-epoch log: key -> one float per finished epoch (a plain dict of lists, so it checkpoints).
History = dict[str, list[float]]


def new_history() -> History:
    """An empty per-epoch log with every key of :data:`HISTORY_KEYS`."""
    return {k: [] for k in HISTORY_KEYS}


# --- batches ----------------------------------------------------------------------------------------


def normalise(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` ``Bx3xHxW`` (on any device) -> float32 ``(x / 255 - MEAN) / STD``, computed where the batch is."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalise expects uint8 images (as the DataLoader yields them), got {images.dtype}")
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float().div_(255) - mean).div_(std)


def prepare_batch(batch: Mapping[str, Any], device: str | torch.device,
                  channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, masks)`` of a collated batch on ``device``: images float32 normalised there, masks float 0/1.

    The transfer is ``non_blocking`` (it overlaps with compute when the batch is in pinned memory, as
    ``pin_memory=True`` makes it); the ``uint8`` -> float conversion happens after the copy, so 4x fewer
    bytes travel. ``channels_last`` stores the images NHWC, the layout convolutions prefer.
    """
    for key in ("image", "mask"):
        if key not in batch:
            raise KeyError(f"batch has no {key!r} (keys: {sorted(batch)}); compose ConvertGroundTruth and ToTensor")
    images = normalise(batch["image"].to(device, non_blocking=True))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = batch["mask"].to(device, non_blocking=True).float()
    return images, masks


def face_pixel_fraction(source: Iterable) -> float:
    """The share of face pixels in the masks of a DataLoader (batches) or a Dataset (samples).

    Pass the TRAINING split with the training transforms (masks at the training size). One full pass
    over the images: every image is decoded once.
    """
    face = total = 0
    is_dataset = hasattr(source, "__getitem__") and hasattr(source, "__len__") and not hasattr(source, "batch_size")
    items = (source[i] for i in range(len(source))) if is_dataset else iter(source)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "mask" not in item:
            raise KeyError(f"item {i} has no 'mask': face_pixel_fraction needs ConvertGroundTruth in the transform")
        mask = torch.as_tensor(item["mask"])
        face += int(mask.count_nonzero())
        total += mask.numel()
    if total == 0:
        raise ValueError("face_pixel_fraction: the source yielded no pixels (is it empty?)")
    return face / total


def positive_weight(face_fraction: float) -> float:
    """``pos_weight`` for ``BCEWithLogitsLoss``: the square root of the background/face pixel ratio.

    The full ratio (about 12.5 for the 7.4% face pixels of the quick data set) makes the face pixels
    weigh as much as all the background together: recall goes up, but so do false positives at the 0.5
    threshold, and IoU suffers. With no weight the 93% background dominates the sum. The
    square root (3.5 here) sits between the two.

    How it was chosen, honestly: by comparing IoU on the TEST split of the quick configuration, before
    this project had a validation split (BCE alone: full ratio 0.72, precision 0.73, recall 0.98;
    square root 0.82; square root plus the Dice term of :class:`FaceLoss`: 0.85). Those test figures
    took part in the choice, so they are optimistic. ``python -m helpers.lab.tune`` repeats the comparison
    on the VALIDATION split (see its docstring for what has been run).
    """
    if not 0.0 < face_fraction < 1.0:
        raise ValueError(f"face fraction {face_fraction}: need some face and some background pixels to weigh them")
    return math.sqrt((1.0 - face_fraction) / face_fraction)


class FaceLoss(nn.Module):
    """``BCEWithLogitsLoss(pos_weight)`` + ``dice_weight`` x soft Dice loss (1 - soft Dice over the batch).

    BCE gives every pixel a gradient (good early in training); the Dice term scores the overlap of
    predicted and true face pixels, the quantity IoU reports, whatever the share of face pixels. With
    ``pos_weight`` and the Dice term the sigmoid output is a face SCORE (it over-states face compared
    with a calibrated probability), thresholded at 0.5. ``dice_weight=1`` was chosen with
    ``pos_weight`` on test IoU (see :func:`positive_weight`); ``python -m helpers.lab.tune`` compares it on
    validation.
    """

    def __init__(self, pos_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("pos_weight", torch.tensor([float(pos_weight)]))
        self.dice_weight = float(dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)
        if self.dice_weight == 0:
            return bce
        p = torch.sigmoid(logits)
        dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        return bce + self.dice_weight * (1 - dice)

    def extra_repr(self) -> str:
        return f"pos_weight={float(self.pos_weight):.3f}, dice_weight={self.dice_weight}"


# --- data and model -----------------------------------------------------------------------------


class Loaders(NamedTuple):
    """The three loaders of :func:`build_loaders`: ``train`` to learn on, ``val`` for every choice and
    the per-epoch figures, ``test`` to score ONCE at the end (:func:`final_test`)."""

    train: Any
    val: Any
    test: Any


def build_loaders(config: RunConfig, device: str | torch.device = "cpu", keep_test_boxes: bool = False,
                  num_workers: int | None = None, data_dir: str | Path | None = None,
                  loader_batch_size: int | None = 64, reduced_decode: bool = True,
                  augment: bool = False) -> Loaders:
    """:class:`Loaders` ``(train, val, test)`` over ``data_dir`` (default ``config.data_dir``: generate it first,
    notebook 00 / ``helpers.synth.ensure_dataset``; or a folder made by ``helpers.convert``), split by
    ``read_file_lists`` with ``config.test_fraction`` and ``config.val_fraction`` and its default seed 0,
    whatever the training seed, so runs with other seeds are scored on the same images. The train
    loader shuffles (seeded); the others do not. ``num_workers``: default ``config.num_workers``.
    ``keep_test_boxes`` keeps the rescaled boxes in validation AND test batches (a list per batch)
    for box recall and face-level counts.

    Faster than the pipeline of notebooks 02-04 taken literally, with the same boxes and masks: every
    image is decoded straight to ``config.image_size`` (``FaceDataset(decode_size=...)``: a reduced
    JPEG decode, no full-size array), and the workers collate ``loader_batch_size`` samples at a time
    (rounded down to a multiple of ``config.batch_size``), which :class:`helpers.loader.SplitBatches`
    cuts into batches of ``config.batch_size``: the same batches, in the same order, as a loader of
    ``config.batch_size``, at a fraction of the per-batch hand-over cost. ``loader_batch_size=None``
    gives plain DataLoaders of ``config.batch_size``; ``reduced_decode=False`` the full decode + ``Rescale``
    (the reference path, e.g. to benchmark against).

    ``augment``: the training images (not the others) are flipped left-right with probability 0.5,
    image and mask together, by :class:`helpers.loader.SeededAugment` (a random draw per sample and
    epoch, the same whatever the number of workers; :func:`train` sets the epoch). Notebook 05 says why
    its default run trains without it.
    """
    from .collate import collate_keep_boxes
    from .datafiles import read_file_lists
    from .dataset import FaceDataset
    from .loader import RandomHorizontalFlip, SeededAugment, SplitBatches, make_loader
    from .storage import BoxArray, PathArray
    from .transforms import default_pipeline

    folder = Path(data_dir) if data_dir is not None else config.data_dir
    lists = read_file_lists(folder, config.test_fraction, val_fraction=config.val_fraction)  # seed 0
    workers = config.num_workers if num_workers is None else num_workers
    pin = torch.device(device).type == "cuda"
    size = tuple(config.image_size)
    decode_size = size if reduced_decode else None
    # decode_size: each image is decoded straight to the training size (reduced JPEG decode), so the
    # Rescale in default_pipeline finds it at size; boxes and masks equal the full-decode path's.
    # PathArray/BoxArray: the index is a few NumPy arrays, so forked workers do not copy it page by page.
    train_set = FaceDataset(PathArray(lists.files_train), BoxArray(lists.labels_train), root=folder,
                            transform=default_pipeline(size), decode_size=decode_size)
    if augment:
        train_set = SeededAugment(train_set, RandomHorizontalFlip(0.5), seed=config.seed)
    held_out = [FaceDataset(PathArray(files), BoxArray(labels), root=folder,
                            transform=default_pipeline(size, keep_boxes=keep_test_boxes), decode_size=decode_size)
                for files, labels in ((lists.files_val, lists.labels_val), (lists.files_test, lists.labels_test))]
    batch = config.batch_size
    big = batch if loader_batch_size is None else max(batch, loader_batch_size // batch * batch)
    train_loader = make_loader(train_set, big, shuffle=True, seed=config.seed, num_workers=workers, pin_memory=pin)
    val_loader, test_loader = (make_loader(ds, big, shuffle=False, seed=config.seed, num_workers=workers,
                                           pin_memory=pin, collate_fn=collate_keep_boxes if keep_test_boxes else None)
                               for ds in held_out)
    if loader_batch_size is None:
        return Loaders(train_loader, val_loader, test_loader)
    return Loaders(*(SplitBatches(loader, batch) for loader in (train_loader, val_loader, test_loader)))


def check_loaders(train_loader: Iterable, val_loader: Iterable) -> None:
    """Refuse loaders that cannot train, with a message saying why, BEFORE any work starts.

    Raises :class:`helpers.errors.DataError` for an empty training or validation split, and for a
    ``batch_size`` larger than the training split with ``drop_last=True`` (no full batch: an epoch of
    zero steps). Warns when ``batch_size`` exceeds the training split without ``drop_last`` (one short
    batch per epoch: it trains, but probably not as meant; for the validation split that is fine). Loaders without ``dataset``/``batch_size``
    (plain iterables) are only checked for having any batch at all.
    """
    import warnings

    from .errors import DataError

    for split, loader in (("training", train_loader), ("validation", val_loader)):
        dataset = getattr(loader, "dataset", None)
        batch_size = getattr(loader, "batch_size", None)
        n = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
        if n == 0:
            raise DataError(f"the {split} split is empty (0 images): add images, or change test_fraction / "
                            "val_fraction so that every split gets some")
        if split == "training" and n is not None and batch_size and batch_size > n:
            if getattr(loader, "drop_last", False):
                raise DataError(f"the {split} loader has batch_size={batch_size} and drop_last=True but the "
                                f"{split} split holds only {n} image(s): no full batch, so an epoch would "
                                "have 0 steps; lower batch_size or set drop_last=False")
            warnings.warn(f"the {split} loader's batch_size={batch_size} exceeds the {n} image(s) of the "
                          f"{split} split: every epoch is one batch of {n}", stacklevel=3)
        if hasattr(loader, "__len__") and len(loader) == 0:
            raise DataError(f"the {split} loader yields no batch; check its data set and batch_size")


def build_model(**overrides: Any) -> FaceUNet:
    """``FaceUNet(**MODEL_DEFAULTS)``, with ``overrides`` applied."""
    return FaceUNet(**{**MODEL_DEFAULTS, **overrides})


def _native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the argument
        return torch.cuda.get_device_capability()[0] >= 8


def amp_settings(device: str | torch.device) -> tuple[bool, torch.dtype]:
    """``(enabled, dtype)`` for ``torch.autocast``. On CUDA: bf16 where the GPU computes it natively
    (Ampere and later: A100, L4, H100), which needs no loss scaling; else fp16 (e.g. Colab's T4), which
    needs a ``GradScaler`` against gradient underflow. Elsewhere off (float32): autocast on a CPU
    rarely speeds up convolutions, and MPS is kept in float32 for simplicity."""
    if torch.device(device).type == "cuda":
        return True, (torch.bfloat16 if _native_bf16() else torch.float16)
    return False, torch.float32


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What :func:`evaluate` measured over a whole split."""

    counts: PixelCounts
    loss: float = float("nan")
    boxes: BoxRecall | None = None
    #: (name, IoU) of every image, in loader order (for picking the worst)
    per_image: list[tuple[str, float]] = field(default_factory=list)
    #: face-level counts (precision, recall, false positives, on distractors) when batches carry boxes
    faces: FaceCounts | None = None

    def summary(self) -> dict[str, Any]:
        """Every figure by name (pixel ratios, box recall, face-level counts): for logs and JSON."""
        out: dict[str, Any] = dict(self.counts.as_dict())
        if self.boxes is not None:
            out["box_recall"] = self.boxes.recall
        if self.faces is not None:
            out.update(self.faces.as_dict())
        return out

    def worst(self, k: int = 4) -> list[tuple[str, float]]:
        """The ``k`` images with the lowest IoU."""
        return sorted(self.per_image, key=lambda t: t[1])[:k]


@torch.no_grad()
def evaluate(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
             device: str | torch.device = "cpu", threshold: float = 0.5,
             loss_fn: nn.Module | None = None, channels_last: bool = False,
             distractors: Mapping[str, Any] | None = None) -> Evaluation:
    """Face IoU/Dice/precision/recall over all pixels of ``loader``'s split, per-image IoU and, when the
    batches carry ``'boxes'`` (``build_loaders(keep_test_boxes=True)``), per-face box recall and
    face-level counts (:func:`helpers.metrics.face_counts`: precision and recall of predicted regions).

    ``model``: the network (run in eval mode on normalised images; face score = sigmoid(logit)), or any
    callable taking the ``uint8`` ``Bx3xHxW`` batch and returning scores or a mask of
    ``Bx1xHxW`` (e.g. ``ColourBaseline.predict``). ``distractors``: image name -> distractor boxes at
    the prediction's resolution (:func:`split_distractors`); ``None`` or a missing name: false
    positives on distractors unknown (``faces.fp_distractor`` None).

    Use it on the validation split while choosing; the test split goes through :func:`final_test`.
    """
    device = torch.device(device)
    is_net = isinstance(model, nn.Module)
    amp_on, amp_dtype = amp_settings(device)
    was_training = is_net and model.training
    if is_net:
        model.eval()
    counts, boxes, faces, per_image = PixelCounts(), None, None, []
    loss_sum, n_batches = 0.0, 0
    try:
        for batch in loader:
            if is_net:
                x, y = prepare_batch(batch, device, channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
                    logits = model(x)
                logits = logits.float()
                if loss_fn is not None:
                    loss_sum += float(loss_fn(logits, y))
                    n_batches += 1
                pred = logits > 0  # sigmoid(logit) > 0.5
                if threshold != 0.5:
                    pred = torch.sigmoid(logits) > threshold
            else:
                y = batch["mask"].to(device)
                out = model(batch["image"].to(device))
                pred = as_face_mask(out, threshold)
            y = y.bool() if y.dtype != torch.bool else y
            counts.update(pred, y)
            per_image += list(zip(batch.get("name", [""] * len(pred)), per_image_iou(pred, y).tolist()))
            if "boxes" in batch:
                boxes = boxes or BoxRecall()
                faces = faces or FaceCounts()
                names = batch.get("name", [None] * len(pred))
                for p, b, name in zip(pred, batch["boxes"], names):
                    p = p[0].cpu()
                    boxes = boxes + box_recall(p, b)
                    fakes = distractors.get(name) if distractors is not None else None
                    faces = faces + face_counts(p, b, fakes)
    finally:
        if was_training:
            model.train()
    return Evaluation(counts, loss_sum / n_batches if n_batches else float("nan"), boxes, per_image, faces)


def split_distractors(dataset: Any, image_size: tuple[int, int],
                      data_dir: str | Path | None = None) -> dict[str, np.ndarray] | None:
    """The distractor boxes (``distractors.json``, written by ``helpers.synth``) of every image of
    ``dataset`` (a :class:`FaceDataset`), scaled like its boxes to ``image_size`` (h, w), by name: what
    :func:`evaluate`'s ``distractors`` takes. ``None`` when the folder has no ``distractors.json``
    (your own data): unknown, not zero. The original size comes from each image's header."""
    from PIL import Image

    from .datafiles import load_distractors

    folder = Path(data_dir) if data_dir is not None else dataset.root
    record = load_distractors(folder) if folder is not None else None
    if record is None:
        return None
    h, w = image_size
    out: dict[str, np.ndarray] = {}
    for i in range(len(dataset)):
        name = dataset.name(i)
        if name not in record:
            continue
        with Image.open(dataset.path(i)) as im:
            ow, oh = im.size
        ratios = np.array([w / ow, h / oh] * 2, dtype=np.float32)  # Rescale's arithmetic
        out[name] = np.asarray(record[name], dtype=np.float32).reshape(-1, 4) * ratios
    return out


def final_test(contestants: Mapping[str, nn.Module | Callable[[torch.Tensor], torch.Tensor]], loader: Iterable,
               device: str | torch.device = "cpu", distractors: Mapping[str, Any] | None = None,
               channels_last: bool = False) -> dict[str, Evaluation]:
    """Score every contestant (name -> network or callable, as :func:`evaluate` takes) on the TEST split.

    Run it ONCE, at the very end, after every choice (loss weights, model size, epochs, the baseline's
    bins and threshold) has been made on the training and validation splits. Looking at test figures
    and then changing something makes them a second validation split, and no longer an honest
    estimate. All contestants are scored in the same call so there is no reason to come back.
    ``loader``: ``build_loaders(..., keep_test_boxes=True).test`` (boxes give box recall and
    face-level counts).
    """
    return {name: evaluate(model, loader, device if isinstance(model, nn.Module) else "cpu",
                           channels_last=channels_last and isinstance(model, nn.Module), distractors=distractors)
            for name, model in contestants.items()}


# --- checkpoints ---------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, config: RunConfig, epoch: int, history: History,
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
        "rng": _rng_state(),
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
        raise ValueError(f"{path}: not a checkpoint written by helpers.train.save_checkpoint")
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


# --- training ------------------------------------------------------------------------------------


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_beside_workers(num_workers: int, cores: int | None = None) -> int:
    """Intra-op threads for the main process when ``num_workers`` DataLoader workers share the cores.

    Each worker keeps a core busy decoding; torch's threads in the main process wait for one another
    at every operation (OpenMP spins while it waits), so more threads than free cores make every step
    wait for the slowest. Measured with ``python tools/threads_under_load.py`` (docs/benchmarks.md).
    """
    cores = usable_cores() if cores is None else cores
    return max(1, cores - num_workers)


@contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` inside the block, the previous value restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def build_optimizer(model: nn.Module, config: RunConfig, total_steps: int,
                    weight_decay: float = 1e-4) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW at ``config.lr`` and a OneCycle LR schedule over ``total_steps`` steps (20% warm-up, then
    cosine decay), stepped once per batch: what :func:`train` builds (tests/test_distributed.py checks
    that both give the same weights; ``train`` keeps its lines inline so notebook 05 shows them)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                    pct_start=0.2)
    return optimizer, scheduler


def train_step(model: nn.Module, batch: Mapping[str, Any], loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, scaler: Any, device: torch.device, channels_last: bool = False) -> float:
    """One optimisation step on one batch, the body of :func:`train`'s loop; returns its loss. The same
    for one process and for a ``DistributedDataParallel`` model (its ``backward`` averages the gradients
    over the processes). tests/test_distributed.py checks that it trains exactly as ``train`` does."""
    amp_on, amp_dtype = amp_settings(device)
    x, y = prepare_batch(batch, device, channels_last)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
        logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    return loss.item()  # also waits for the GPU, so the caller's timings are honest


def train_one_epoch(model: nn.Module, loader: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, device: torch.device, channels_last: bool = False,
                    on_step: Callable[[int], Any] | None = None) -> tuple[float, int, float]:
    """One pass over ``loader``: a :func:`train_step` per batch. Returns (mean loss, steps, seconds spent
    waiting for the loader), the last being what shows whether the data pipeline keeps up.
    ``on_step(1)`` is called after each step (a progress bar's ``update``)."""
    model.train()
    loss_sum, steps, wait = 0.0, 0, 0.0
    batches = iter(loader)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)  # the time spent here is time the model waits for data
        wait += time.perf_counter() - t0
        if batch is None:
            break
        loss_sum += train_step(model, batch, loss_fn, optimizer, scheduler, scaler, device, channels_last)
        steps += 1
        if on_step is not None:
            on_step(1)
    return loss_sum / max(steps, 1), steps, wait


class TrainResult(NamedTuple):
    """What :func:`train` returns: the trained model (eval mode), the per-epoch history, the last
    :class:`Evaluation` on the VALIDATION split (never the test split), the measured face-pixel
    fraction and the device used."""

    model: FaceUNet
    history: History
    evaluation: Evaluation | None
    face_fraction: float
    device: str


def _reseed_loader(loader: Any, seed: int) -> None:
    """Reset the loader's shuffling (and worker base seed) so epoch ``e`` always sees the same order."""
    sampler_gen = getattr(getattr(loader, "sampler", None), "generator", None)
    if sampler_gen is not None:
        sampler_gen.manual_seed(seed)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed)


def train(
    config: RunConfig,
    *,
    loaders: Sequence[Iterable] | None = None,
    device: str | torch.device | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    face_fraction: float | None = None,
    dice_weight: float = 1.0,
    pos_weight: float | None = None,
    weight_decay: float = 1e-4,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    stop_after: int | None = None,
    channels_last: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train a :class:`FaceUNet` on ``config`` and return it with its history.

    - ``loaders``: :class:`Loaders` or ``(train_loader, val_loader)``, default :func:`build_loaders`
      (the data set must exist). Only ``train`` and ``val`` are used: the per-epoch ``val_*`` figures
      are the VALIDATION split's, and the test split is never touched (score it once afterwards with
      :func:`final_test`). The train loader's sampler is reseeded with ``config.seed + epoch`` at every epoch, so
      the order of epoch ``e`` does not depend on how many epochs ran before (exact resumption).
    - Device: ``device`` or ``pick_device()``. CUDA: autocast (bf16, else fp16 + GradScaler),
      ``cudnn.benchmark``. ``channels_last`` on every device (it also speeds up CPU convolutions).
    - Loss: :class:`FaceLoss` with ``pos_weight = positive_weight(face_fraction)`` (unless ``pos_weight``
      is given: ``python -m helpers.lab.tune`` compares rules), the fraction measured on the training
      loader unless given; AdamW, OneCycle LR (warm-up then cosine decay, per step).
    - ``checkpoint_path``: a checkpoint is written there after every epoch; ``resume_from`` continues
      from one (same config; the model size, face fraction and loss weights come from the checkpoint,
      the shuffling from the epoch number, the RNG states are restored); ``stop_after``: stop after that many epochs in total (to simulate an
      interruption). The per-epoch log goes to ``log`` (``None``: silent); ``progress``: tqdm bars
      (default: on, unless ``FACES_PROGRESS=0``, which ``make run/test/refresh`` set).
    - CPU threads: on a CPU with DataLoader workers, torch's intra-op threads are cut to the cores the
      workers leave (:func:`threads_beside_workers`) for the epoch loop, and restored after.
    """
    from tqdm.auto import tqdm

    from .notebook import progress_bars
    from .setup_env import pick_device

    progress = progress_bars() if progress is None else progress
    device = torch.device(device or pick_device())
    state = None
    if resume_from is not None:
        state = load_checkpoint(resume_from, map_location=device)
        saved = config_from_dict(state["config"])
        if saved != config:
            raise ValueError(f"{resume_from}: saved for config {saved}, not {config}; resume with the same config")
        model_kwargs = state.get("model_kwargs", model_kwargs)
        face_fraction = state.get("face_fraction", face_fraction)
        dice_weight = state.get("dice_weight", dice_weight)
        pos_weight = state.get("pos_weight", pos_weight)
    model_kwargs = {**MODEL_DEFAULTS, **(model_kwargs or {})}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
    train_loader, val_loader = tuple(loaders if loaders is not None else build_loaders(config, device))[:2]
    check_loaders(train_loader, val_loader)
    if face_fraction is None:
        face_fraction = face_pixel_fraction(train_loader)
    if pos_weight is None:
        pos_weight = positive_weight(face_fraction)

    torch.manual_seed(config.seed)
    model = FaceUNet(**model_kwargs).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    loss_fn = FaceLoss(pos_weight, dice_weight).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=weight_decay)
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2)
    amp_on, amp_dtype = amp_settings(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_on and amp_dtype == torch.float16)
    history, start = new_history(), 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, start = {k: list(v) for k, v in state["history"].items()}, state["epoch"]
        _set_rng_state(state["rng"])
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    evaluation = None
    workers = getattr(train_loader, "num_workers", 0)
    threads = threads_beside_workers(workers) if device.type == "cpu" else torch.get_num_threads()
    if log:
        log(f"device {device} | face pixels {face_fraction:.3f} -> pos_weight {pos_weight:.2f} | "
            f"{steps_per_epoch} steps/epoch | amp {amp_dtype if amp_on else 'off'}"
            + (f" | {threads} torch thread(s) beside {workers} loader worker(s)" if device.type == "cpu" else "")
            + (f" | resuming after epoch {start}" if start else ""))
    with torch_threads(threads):  # see threads_beside_workers
        for epoch in range(start, end):
            _reseed_loader(train_loader, config.seed + epoch)
            set_epoch = getattr(getattr(train_loader, "dataset", None), "set_epoch", None)
            if set_epoch is not None:  # SeededAugment: this epoch's random draws (see build_loaders' augment)
                set_epoch(epoch)
            t_start = time.perf_counter()
            # mininterval: a few refreshes per epoch, so a notebook's output (and nbval, which reads it only
            # after the cell ends and loses messages past ZMQ's high-water mark) is not flooded.
            with tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                      leave=False, mininterval=2.0) as bar:
                epoch_loss, n, wait = train_one_epoch(model, train_loader, loss_fn, optimizer, scheduler, scaler,
                                                      device, channels_last, on_step=bar.update)
            seconds = time.perf_counter() - t_start
            t_val = time.perf_counter()
            evaluation = evaluate(model, val_loader, device, loss_fn=loss_fn, channels_last=channels_last)
            val_seconds = time.perf_counter() - t_val
            c = evaluation.counts
            row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": epoch_loss,
                   "val_loss": evaluation.loss, "val_iou": c.iou, "val_dice": c.dice, "val_precision": c.precision,
                   "val_recall": c.recall, "seconds": seconds, "val_seconds": val_seconds,
                   "wait_fraction": wait / seconds if seconds > 0 else 0.0}
            for k in HISTORY_KEYS:
                history[k].append(float(row[k]))
            if log:
                log(f"epoch {epoch + 1:>2}/{config.epochs}  loss {row['train_loss']:.4f}  val IoU {c.iou:.3f}  "
                    f"Dice {c.dice:.3f}  P {c.precision:.3f}  R {c.recall:.3f}  "
                    f"{seconds:.1f}s (+{val_seconds:.1f}s val)  waiting {row['wait_fraction']:.1%}")
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler, config, epoch + 1, history,
                                model_kwargs=dict(model_kwargs), face_fraction=float(face_fraction),
                                dice_weight=float(dice_weight), pos_weight=float(pos_weight))
    model.eval()
    return TrainResult(model, history, evaluation, float(face_fraction), str(device))


# --- inference -----------------------------------------------------------------------------------


def _read_resized(image: Any, image_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``(HxWx3 uint8 RGB at image_size, (height, width) of the whole image)`` of a PIL image or an image
    file. A file is read as training reads it (``FaceDataset(decode_size=image_size)``: EXIF orientation
    applied, any mode converted to RGB, a JPEG decoded at a reduced scale, errors naming the file). A
    PIL image (already decoded) is converted to RGB and resized with Pillow's bilinear filter, as
    ``Rescale`` does, without an array round trip at full size."""
    from PIL import Image

    height, width = (int(v) for v in image_size)
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        full = (rgb.height, rgb.width)
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        return np.array(rgb), full
    from .dataset import read_resized

    return read_resized(image, (height, width))


@torch.no_grad()
def predict(model: nn.Module, image: str | Path | Any, image_size: tuple[int, int],
            device: str | torch.device | None = None) -> np.ndarray:
    """The face SCORE of every pixel of ``image`` (a path or a PIL image) at its ORIGINAL size,
    ``HxW`` float32 in [0, 1]: ``sigmoid(logit)``, face where > 0.5. A score, not a calibrated
    probability (the loss weighs face pixels up and adds a Dice term, see :class:`FaceLoss`).

    The image is brought to ``image_size`` as in training (a file: decoded straight to that size, as
    ``build_loaders``' datasets do), run through the network, and the logits are upsampled bilinearly
    back to the original size before the sigmoid.
    """
    from .transforms import ToTensor

    device = torch.device(device) if device is not None else next(model.parameters()).device
    rgb, (h, w) = _read_resized(image, tuple(image_size))
    sample = ToTensor()({"image": rgb})
    x = normalise(sample["image"].unsqueeze(0).to(device))
    model.eval()
    amp_on, amp_dtype = amp_settings(device)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
        logits = model(x)
    logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
    return torch.sigmoid(logits)[0, 0].cpu().numpy().astype(np.float32)


# --- command line: the benchmark behind the numbers the notebook and README quote -------------------


def evaluation_table(evaluations: Mapping[str, Evaluation]) -> str:
    """The figures of several :class:`Evaluation`s side by side, one row each: pixel IoU, Dice, precision
    and recall; box recall; face-level precision and recall (faces found / faces), false face regions and
    how many of those lie on distractors (``?`` when unknown: a folder without ``distractors.json``)."""
    head = (f"{'':<16} {'IoU':>6} {'Dice':>6} {'prec.':>6} {'recall':>6} | {'box rec.':>8} | "
            f"{'face prec.':>10} {'face rec.':>9} {'found':>9} {'false':>6} {'on distr.':>9}")
    rows = [head, "-" * len(head)]
    for name, ev in evaluations.items():
        c, b, f = ev.counts, ev.boxes, ev.faces
        row = f"{name:<16} {c.iou:6.3f} {c.dice:6.3f} {c.precision:6.3f} {c.recall:6.3f} | "
        row += f"{b.recall:8.3f} | " if b is not None else f"{'-':>8} | "
        if f is not None:
            on = "?" if f.fp_distractor is None else str(f.fp_distractor)
            row += f"{f.precision:10.3f} {f.recall:9.3f} {f'{f.tp}/{f.faces}':>9} {f.fp:6d} {on:>9}"
        rows.append(row.rstrip())
    tiny = {name: ev.faces.tiny for name, ev in evaluations.items() if ev.faces is not None}
    if tiny:  # not faces, not errors, but not silently dropped either
        rows.append(f"regions under {MIN_REGION_PIXELS} px, not counted as faces: "
                    + ", ".join(f"{name} {n}" for name, n in tiny.items()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.train [--config quick|full]``: generate the data set if needed, train, choose
    the colour baseline's bins on validation, report the VALIDATION figures of both, then score both
    ONCE on the test split (:func:`final_test`): IoU/Dice/precision/recall, box recall, face-level
    precision/recall and false faces (on distractors apart), the time and the waiting fraction.
    Writes the checkpoint under ``outputs/checkpoints/`` (``--checkpoint``)."""
    import argparse
    import json

    from . import baseline
    from .project import OUTPUTS, relative
    from .runconfig import pick_config
    from .setup_env import describe_device, pick_device
    from .synth import ensure_dataset

    p = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description="Train the face classifier, compare it with the colour baseline on the validation split, "
                    "then score both once on the test split.")
    p.add_argument("--config", choices=["quick", "full"], default=None, help="run size (default: from the device)")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--num-workers", type=int, default=None, help="override the config's num_workers")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="where to write the checkpoint (default outputs/checkpoints/faces-<config>-benchmark.pt, "
                        "apart from the notebook's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    args = p.parse_args(argv)

    device = pick_device()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("num_workers", args.num_workers)) if v is not None}
    config = pick_config(args.config, device=device, **overrides)
    print(f"{config.name}: {config} on {describe_device(device)}")
    ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=not args.no_progress)
    checkpoint = args.checkpoint or OUTPUTS / "checkpoints" / f"faces-{config.name}-benchmark.pt"
    loaders = build_loaders(config, device, keep_test_boxes=True)
    t0 = time.perf_counter()
    result = train(config, loaders=loaders, device=device, checkpoint_path=checkpoint,
                   progress=False if args.no_progress else None)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    colour, bin_scores = baseline.fit_select(loaders.train, loaders.val)
    baseline_seconds = time.perf_counter() - t1
    image_size = tuple(config.image_size)
    val_fakes = split_distractors(loaders.val.dataset, image_size)
    val = {"CNN": evaluate(result.model, loaders.val, device, channels_last=True, distractors=val_fakes),
           "colour baseline": evaluate(colour.predict, loaders.val, "cpu", distractors=val_fakes)}
    # Every choice is made; the test split is scored once, here.
    test = final_test({"CNN": result.model, "colour baseline": colour.predict}, loaders.test, device,
                      distractors=split_distractors(loaders.test.dataset, image_size), channels_last=True)
    h = result.history
    report = {
        "config": config.as_dict(), "device": describe_device(device), "train_seconds": train_seconds,
        "wait_fraction_mean": float(np.mean(h["wait_fraction"])), "wait_fraction_max": float(np.max(h["wait_fraction"])),
        "splits": {k: len(getattr(loaders, k).dataset) for k in ("train", "val", "test")},
        "validation": {"cnn": val["CNN"].summary(), "baseline": val["colour baseline"].summary()},
        "test": {"cnn": test["CNN"].summary(), "baseline": test["colour baseline"].summary()},
        "baseline": {"bins": colour.bins, "val_iou_by_bins": {str(k): v for k, v in bin_scores.items()},
                     "threshold": colour.threshold, "seconds": baseline_seconds},
        "checkpoint": relative(checkpoint),
    }
    print(f"trained in {train_seconds:.0f}s ({len(h['epoch'])} epochs, waiting for batches "
          f"{report['wait_fraction_mean']:.1%} on average, {report['wait_fraction_max']:.1%} at most)")
    print(f"colour baseline: {colour.bins} bins per channel, chosen on validation IoU "
          + ", ".join(f"{k}: {v:.3f}" for k, v in bin_scores.items()))
    n = report["splits"]
    print(f"validation ({n['val']} images; what choices are made on):")
    print(evaluation_table(val))
    print(f"test ({n['test']} images; scored once, after every choice):")
    print(evaluation_table(test))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
