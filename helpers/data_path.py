"""The whole data path on one screen: ``bbox.json`` -> file lists (split train/validation/test) ->
``FaceDataset`` (lazy reads, decoded straight to the training size) -> transforms (boxes -> mask,
``ToTensor``) -> ``DataLoader`` (seeded shuffling, workers, channels_last batches, big loader batches
split back), for the
three splits a run needs (:func:`build_loaders`), and the checks that refuse loaders which cannot
train (:func:`check_loaders`). Every piece it assembles is taught in notebooks 01-04.

Notebooks: 05 teaches it; 08 uses it.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .runconfig import RunConfig

__all__ = ["Loaders", "build_loaders", "check_loaders"]


class Loaders(NamedTuple):
    """The three loaders of :func:`build_loaders`: ``train`` to learn on, ``val`` for every choice and
    the per-epoch figures, ``test`` to score ONCE at the end (:func:`helpers.evaluation.final_test`)."""

    train: Any
    val: Any
    test: Any


def build_loaders(config: RunConfig, device: str | torch.device = "cpu", keep_test_boxes: bool = False,
                  num_workers: int | None = None, data_dir: str | Path | None = None,
                  loader_batch_size: int | None = 64, reduced_decode: bool = True,
                  channels_last: bool = True, augment: bool = False) -> Loaders:
    """:class:`Loaders` ``(train, val, test)`` over ``data_dir`` (default ``config.data_dir``: generate it first,
    notebook 00 / ``helpers.synth.ensure_dataset``; or a folder made by ``helpers.convert``), split by
    ``read_file_lists`` with ``config.test_fraction`` and ``config.val_fraction`` and its default seed 0,
    whatever the training seed, so runs with other seeds are scored on the same images. The train
    loader shuffles (seeded); the others do not. ``num_workers``: default ``config.num_workers``.
    ``keep_test_boxes`` keeps the rescaled boxes in validation AND test batches (a list per batch)
    for box recall and face-level counts.

    Faster than the pipeline of notebooks 02-04 taken literally, with the same boxes and masks: every
    image is decoded straight to ``config.image_size`` (``FaceDataset(decode_size=...)``: a reduced
    JPEG decode, no full-size array), the workers stack the images in the memory order they were decoded
    in (``collate_channels_last``: channels_last batches, the layout training uses, with no reordering
    copy), and they collate ``loader_batch_size`` samples at a time
    (rounded down to a multiple of ``config.batch_size``), which :class:`helpers.loader.SplitBatches`
    cuts into batches of ``config.batch_size``: the same batches, in the same order, as a loader of
    ``config.batch_size``, at a fraction of the per-batch hand-over cost. ``loader_batch_size=None``
    gives plain DataLoaders of ``config.batch_size``; ``reduced_decode=False`` the full decode + ``Rescale``
    and ``channels_last=False`` ``default_collate``'s contiguous batches (both False, with
    ``loader_batch_size=None``: the pipeline of notebooks 02-04 taken literally, to benchmark against).

    ``augment``: the training images (not the others) are flipped left-right with probability 0.5,
    image and mask together, by :class:`helpers.loader.SeededAugment` (a random draw per sample and
    epoch, the same whatever the number of workers; :func:`helpers.train.train` sets the epoch).
    Appendix 05a §4 says why notebook 05 trains without it.
    """
    from functools import partial

    from .collate import collate_channels_last, collate_keep_boxes
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
    if channels_last:
        train_collate, held_out_collate = collate_channels_last, partial(collate_channels_last, keep_boxes=keep_test_boxes)
    else:
        train_collate, held_out_collate = None, collate_keep_boxes if keep_test_boxes else None
    train_loader = make_loader(train_set, big, shuffle=True, seed=config.seed, num_workers=workers, pin_memory=pin,
                               collate_fn=train_collate)
    val_loader, test_loader = (make_loader(ds, big, shuffle=False, seed=config.seed, num_workers=workers,
                                           pin_memory=pin, collate_fn=held_out_collate)
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
