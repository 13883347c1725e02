"""A reproducible DataLoader: seeded shuffling, seeded workers, per-sample random transforms, device transfer.

Random transforms must not draw from an RNG object made in ``__init__``: every worker gets a copy of
it in the same state and the workers repeat each other's "random" choices. ``seed_worker`` (PyTorch's
recipe) re-seeds the global RNGs per worker, which makes a run repeatable only for the same number of
workers (and, with no workers, only if the main process seeds NumPy itself). ``SeededAugment`` goes further: each sample's RNG is derived from (seed, epoch, index), so a
sample is transformed the same way whichever worker loads it, with 0, 2 or 8 workers.

Notebooks: 04 teaches it; 01 (its appendix 01a) uses it.
"""
from __future__ import annotations

import collections.abc
import copy
import random
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from .resume import ResumableRandomSampler


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` from PyTorch's reproducibility notes: seed ``random`` and NumPy from torch's seed.

    In a worker, ``torch.initial_seed()`` is the loader's base seed + ``worker_id`` (the base seed is
    drawn from the loader's ``generator``). Since PyTorch 1.9 the workers already seed ``random``,
    ``torch`` and NumPy's global RNG themselves, so this recipe mostly makes that explicit; it does NOT
    help an ``np.random.default_rng()`` made without a seed (OS entropy) or an RNG object created in a
    Dataset's ``__init__`` (copied into every worker in the same state).
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A NumPy Generator that depends only on (seed, epoch, index): not on the worker, nor on load order."""
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"sample_rng: {name} must be an int >= 0, got {value!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


def _flip_width(x: Any, width_axis: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x.flip(width_axis)
    return np.ascontiguousarray(np.flip(x, axis=width_axis))


class RandomHorizontalFlip:
    """Mirror left-right, with probability ``p``, the image, the mask and the boxes of a sample together.

    Works before ``ToTensor`` (image H x W x 3, mask H x W, NumPy) and after it (image 3 x H x W, mask
    1 x H x W, tensors). A box [x_min, y_min, x_max, y_max] on an image W pixels wide becomes
    [W - x_max, y_min, W - x_min, y_max]: pixel column j goes to column W - 1 - j. Other keys are kept.
    Call it with the sample's own ``rng`` (see ``SeededAugment``); without one it draws from NumPy's
    global RNG, which is repeatable only for the same number of workers.

    Apply it after ``ConvertGroundTruth``: the mask is then mirrored pixel for pixel with the image.
    Flipping the boxes first and computing the mask afterwards gives the same mask except where a box
    edge lies exactly on a pixel centre (x = j + 0.5): the half-open rule [x_min, x_max) keeps that
    column out before the flip and takes its mirror image in after it.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        draw = rng.random() if rng is not None else np.random.random()
        if draw >= self.p:
            return sample
        image = sample["image"]
        # NumPy images are H x W x C (width is axis 1); tensors are C x H x W (width is the last axis).
        image_width_axis = -1 if isinstance(image, torch.Tensor) else 1
        width = image.shape[image_width_axis]
        out = dict(sample)
        out["image"] = _flip_width(image, image_width_axis)
        if "mask" in sample:
            out["mask"] = _flip_width(sample["mask"], -1)  # H x W or 1 x H x W: width is last
        if "boxes" in sample:
            boxes = sample["boxes"]
            if not isinstance(boxes, (torch.Tensor, np.ndarray)):
                boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)  # a list of boxes
            flipped = boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.copy()
            flipped[..., 0] = width - boxes[..., 2]
            flipped[..., 2] = width - boxes[..., 0]
            out["boxes"] = flipped
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class SeededAugment(Dataset):
    """``dataset[index]`` passed through ``transform(sample, rng)`` with ``rng = sample_rng(seed, epoch, index)``.

    Call ``set_epoch(epoch)`` BEFORE each ``for batch in loader`` (the loader starts loading when the
    loop starts). The epoch lives in a shared-memory tensor, so workers see it even when they are
    persistent (created once and kept between epochs, each with its own copy of this object).
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any, np.random.Generator], Any], seed: int) -> None:
        sample_rng(seed, 0, 0)  # validates the seed
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next pass over the data uses."""
        sample_rng(self.seed, epoch, 0)  # validates the epoch
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.dataset[index], sample_rng(self.seed, self.epoch, int(index)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset!r}, {self.transform!r}, seed={self.seed})"


#: Default ``timeout`` (seconds) of a loader with workers: the longest the main process waits for one
#: batch before it raises ``RuntimeError: DataLoader timed out after 300 seconds``. A worker that DIES
#: (killed by a signal, out of memory) is detected by PyTorch itself within seconds, without it; the
#: timeout catches a worker that is alive but STUCK (a hung network file system read, a lock inherited
#: through ``fork``), which would otherwise hang the run for ever. One batch here takes well under a
#: second to load, and starting a worker a few seconds; 300 s is far above both on a busy machine.
DEFAULT_TIMEOUT_S = 300


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    drop_last: bool = False,
    collate_fn: Callable[[list], Any] | None = None,
    multiprocessing_context: Any = None,
    prefetch_factor: int | None = None,
    timeout: float | None = None,
) -> DataLoader:
    """A DataLoader whose batches (which samples, in which order) depend only on ``seed``, not on workers.

    Defaults: ``pin_memory`` True when CUDA is available; ``persistent_workers`` True when there are
    workers. The shuffle order comes from the sampler's own ``torch.Generator`` (seeded with ``seed``)
    and the workers' base seed from a second one. With one shared generator, as ``shuffle=True,
    generator=g`` does, persistent workers would change the order from the second epoch on: a
    non-persistent loader draws a base seed from it every epoch, a persistent one only once.
    With a ``SeededAugment`` dataset, call its ``set_epoch(epoch)`` before each pass over the loader.
    ``timeout``: seconds to wait for one batch from the workers; default :data:`DEFAULT_TIMEOUT_S` when
    there are workers (0, i.e. none, without workers, where there is nothing to wait for).
    """
    if num_workers < 0:
        raise ValueError(f"make_loader: num_workers must be >= 0, got {num_workers}")
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    if persistent_workers and num_workers == 0:
        raise ValueError("make_loader: persistent_workers=True needs num_workers > 0")
    if num_workers == 0 and (prefetch_factor is not None or multiprocessing_context is not None):
        raise ValueError("make_loader: prefetch_factor and multiprocessing_context need num_workers > 0")
    if hasattr(dataset, "__len__") and len(dataset) == 0:  # type: ignore[arg-type]
        from .errors import DataError

        raise DataError(f"make_loader: the data set is empty (0 items), nothing to load: {dataset!r}")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_S if num_workers > 0 else 0
    if timeout < 0 or (timeout > 0 and num_workers == 0):
        raise ValueError(f"make_loader: timeout must be >= 0, and 0 without workers; got {timeout}")
    if shuffle:
        # RandomSampler's order, and a pass that can start part way (a run resumed mid-epoch, helpers.resume)
        sampler: torch.utils.data.Sampler = ResumableRandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=persistent_workers,
        multiprocessing_context=multiprocessing_context,
        prefetch_factor=prefetch_factor,
        timeout=timeout,
    )


def _rebuild_mapping(template: collections.abc.Mapping, values: dict) -> collections.abc.Mapping:
    """A mapping of ``template``'s type holding ``values`` (as ``default_collate`` rebuilds mappings)."""
    if type(template) is dict:
        return values
    try:
        if isinstance(template, collections.abc.MutableMapping):
            clone = copy.copy(template)
            clone.update(values)
            return clone
        return type(template)(values)
    except TypeError:
        return values


def batch_to_device(batch: Any, device: str | torch.device, non_blocking: bool = True) -> Any:
    """Every tensor of a nested batch (dicts, lists, tuples, named tuples) moved to ``device``.

    Other values (names, numbers) are returned unchanged. ``non_blocking=True`` lets a copy from pinned
    memory to a GPU overlap with computation; on the CPU ``.to`` returns the tensor itself.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, collections.abc.Mapping):
        moved = {k: batch_to_device(v, device, non_blocking) for k, v in batch.items()}
        return _rebuild_mapping(batch, moved)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(batch_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        moved_items = [batch_to_device(v, device, non_blocking) for v in batch]
        try:
            return type(batch)(moved_items)
        except TypeError:  # a list/tuple subclass with a different constructor
            return moved_items
    return batch


def _all_text(items: Any) -> bool:
    return len(items) > 0 and all(isinstance(v, (str, bytes)) for v in items)


def _batch_length(batch: Any, fields: bool = True) -> int:
    """The number of samples in a collated batch (its first tensor's or array's first dimension; see
    :func:`_slice_batch` for how lists are read)."""
    if isinstance(batch, (torch.Tensor, np.ndarray)) and batch.ndim > 0:
        return int(batch.shape[0])
    if isinstance(batch, (list, tuple)) and (not fields or _all_text(batch)):
        return len(batch)
    if isinstance(batch, (collections.abc.Mapping, list, tuple)):
        inside_mapping = isinstance(batch, collections.abc.Mapping)
        for value in (batch.values() if inside_mapping else batch):
            try:
                return _batch_length(value, fields=not inside_mapping)
            except TypeError:
                continue
    raise TypeError(f"SplitBatches: cannot tell the batch size of a {type(batch).__name__} "
                    "(expected tensors, arrays, or mappings / tuples of them)")


def _slice_batch(batch: Any, start: int, stop: int, n: int, fields: bool = True) -> Any:
    """Samples ``start:stop`` of a collated batch of ``n`` samples.

    Tensors and arrays are sliced along the first dimension (a view: a pinned batch stays pinned).
    Mappings are sliced value by value; INSIDE a mapping a list or tuple is one entry per sample (what
    ``default_collate`` makes of strings, ``collate_keep_boxes`` of boxes) and must have ``n`` entries.
    A top-level tuple or list (``default_collate`` of ``(input, target)`` samples) holds fields, each
    sliced by these rules, unless it holds only strings (then it is per sample, like the names).
    Anything else is a batch-level value, passed through.
    """
    if isinstance(batch, (torch.Tensor, np.ndarray)) and batch.ndim > 0:
        return batch[start:stop]
    if isinstance(batch, collections.abc.Mapping):
        return _rebuild_mapping(batch, {k: _slice_batch(v, start, stop, n, fields=False) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        if fields and not _all_text(batch):
            parts = [_slice_batch(v, start, stop, n) for v in batch]
            if hasattr(batch, "_fields"):
                return type(batch)(*parts)
            return type(batch)(parts) if type(batch) in (list, tuple) else parts
        if len(batch) != n:
            raise TypeError(f"SplitBatches: a list of {len(batch)} entries in a batch of {n} samples: "
                            "inside a mapping, lists must hold one entry per sample")
        return batch[start:stop]
    return batch


class SplitBatches:
    """Iterate ``loader``'s large batches as training batches of ``batch_size``: the same samples, in
    the same order, with the same tensors as a loader built with ``batch_size`` itself.

    Why: every batch a worker hands to the main process costs a fixed overhead (pickling, a queue
    round trip, one shared-memory segment per tensor: about 2.4 ms per batch, measured), which for
    small images and small batches is a large share of the work. A loader that collates 64 samples
    at a time pays it once per 64; the 8-sample slices made here are views of the big tensors.

    ``loader.batch_size`` must be a multiple of ``batch_size`` and ``loader.drop_last`` False (a big
    loader that dropped its last partial batch would drop up to 63 samples); ``drop_last`` here drops
    the last partial training batch, as ``DataLoader(drop_last=True)`` would. Everything ``train()``,
    ``check_loaders`` and ``_reseed_loader`` read passes through: ``len`` (training batches per epoch),
    ``batch_size`` and ``drop_last`` (those of the training batches), ``dataset``, ``sampler``,
    ``generator``, ``num_workers``; other attributes are the loader's. Batches are mappings, tensors
    or tuples of fields, as :func:`_slice_batch` describes.
    """

    def __init__(self, loader: Any, batch_size: int, drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SplitBatches: batch_size must be an int >= 1, got {batch_size!r}")
        big = getattr(loader, "batch_size", None)
        if big is None or big % batch_size != 0:
            raise ValueError(f"SplitBatches: the loader's batch_size ({big}) must be a multiple of {batch_size}")
        if getattr(loader, "drop_last", False):
            raise ValueError("SplitBatches: build the loader with drop_last=False and pass drop_last here")
        self.loader = loader
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)

    @property
    def loader_batch_size(self) -> int:
        """The size of the batches the workers collate."""
        return self.loader.batch_size

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    @property
    def sampler(self) -> Any:
        return self.loader.sampler

    @property
    def generator(self) -> Any:
        return getattr(self.loader, "generator", None)

    @property
    def num_workers(self) -> int:
        return getattr(self.loader, "num_workers", 0)

    def __len__(self) -> int:
        n = len(self.loader.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        for big in self.loader:
            n = _batch_length(big)
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                if self.drop_last and stop - start < self.batch_size:
                    break
                yield _slice_batch(big, start, stop, n)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __repr__(self) -> str:
        return f"SplitBatches(batch_size={self.batch_size}, loader batches of {self.loader_batch_size})"


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RandomHorizontalFlip",
    "SeededAugment",
    "SplitBatches",
    "batch_to_device",
    "make_loader",
    "sample_rng",
    "seed_worker",
]


# --- Start methods: the platform's own, with a preloaded forkserver ---------------------------------
# (at the end of the module, so that the line numbers notebooks show for the functions above stay true)

#: What a ``forkserver`` may import once, before it forks any worker (those of them this process has
#: imported, torch always): each worker then starts with them imported, on pages it shares with the
#: server, instead of importing torch afresh (about 380 MiB of a CUDA build's torch per process).
FORKSERVER_PRELOAD = ("torch", "numpy", "PIL.Image", "torchvision.transforms.v2", "helpers.storage",
                      "helpers.dataset", "helpers.transforms", "helpers.collate", "helpers.loader")


def forkserver_preload() -> list[str]:
    """The modules :func:`worker_context` asks a forkserver to import: torch, and those of
    :data:`FORKSERVER_PRELOAD` that this process has imported (what a forked worker would inherit;
    a process that never imported torchvision does not make its server pay for it)."""
    import sys

    return [m for m in FORKSERVER_PRELOAD if m == "torch" or m in sys.modules]


def worker_context(start_method: str | None = None) -> Any:
    """The multiprocessing context DataLoader workers start from: ``start_method`` (``'fork'``,
    ``'forkserver'``, ``'spawn'``), default the platform's own (``multiprocessing.get_start_method()``:
    ``fork`` on Linux up to Python 3.13, ``forkserver`` from 3.14, ``spawn`` on macOS and Windows).

    The start method stays the platform's own, deliberately: ``fork`` is unsafe once the main process
    runs threads or CUDA (why Python 3.14 left it), and with the index in shared memory and the server
    preloaded the loader is flat under each. :func:`make_loader` passes no context, so its workers start
    the platform's way, from a server preloaded when this module was imported (:func:`_preload_forkserver`).
    Under ``forkserver`` it asks the server to import :func:`forkserver_preload` first (effective
    when this process starts its server, i.e. the first forkserver loader), so a worker costs its own
    pages only, not a fresh import of torch. The index is held once under all three when it is kept
    as ``PathArray``/``BoxArray(shared=True)`` (``helpers.storage``); lists and plain arrays are
    copied into every ``forkserver`` or ``spawn`` worker.
    """
    import multiprocessing

    ctx = multiprocessing.get_context(start_method)
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(forkserver_preload())
    return ctx


def _preload_forkserver() -> None:
    """On import: every forkserver this process starts imports :data:`FORKSERVER_PRELOAD` first (the
    whole data path: a DataLoader over it needs them all), so a ``make_loader`` left to Python 3.14's
    default start method forks its workers from a server that imported torch once."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        multiprocessing.set_forkserver_preload(list(FORKSERVER_PRELOAD))


_preload_forkserver()
