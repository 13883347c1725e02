"""Resuming a run in the middle of an epoch: samplers that skip what an interrupted epoch already
trained on, the check that a checkpoint belongs to this run, and SIGTERM / Ctrl-C turned into "stop
after this step" (so a checkpoint can be written at a consistent point).

Why this mechanism and not torchdata's ``StatefulDataLoader`` (docs/troubleshooting.md, "my Colab
session ended mid-epoch", gives the figures and how they were measured):

- Everything random about an epoch is already a function of a few numbers: the order of epoch ``e``
  of ``(seed, e)`` (:func:`helpers.train.train` reseeds the sampler with ``seed + e``;
  ``DistributedSampler`` permutes by ``seed + epoch``), each sample's augmentation of
  ``(seed, e, index)`` (:class:`helpers.loader.SeededAugment`), whichever worker draws it. So the
  position in an epoch is ONE number, the steps done; no worker state, no prefetched batch needs saving,
  and under ``torchrun`` each rank derives its own position from it (its sampler holds its own part).
- Skipping in the sampler reads nothing: the skipped samples are never decoded. Fast-forwarding a
  loader (``itertools.islice``) decodes every one of them, i.e. redoes up to an epoch of reading
  (what :func:`skip_done` falls back to for a loader without such a sampler).
- ``torchdata.StatefulDataLoader`` would add a dependency in maintenance mode (not in
  requirements.txt) whose state is per process (each rank must save its own) and counts the loader's
  batches, not training steps: behind :class:`helpers.loader.SplitBatches` (64-sample loader batches
  cut into training batches of 8) a position inside a loader batch needs a second number. Its
  reported pitfall that an early ``state_dict()`` draws from the sampler's generator did not show in
  a probe with torchdata 0.11.0 (same orders with and without it, at 0 and 2 workers).

Notebooks: 07 uses it (§5.1).
"""
from __future__ import annotations

import hashlib
import itertools
import signal
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from torch.utils.data import DistributedSampler, RandomSampler

__all__ = ["ResumableRandomSampler", "ResumableDistributedSampler", "skip_done", "data_fingerprint",
           "refuse_mismatch", "CheckpointMismatch", "StopRequests", "Interrupted"]


class _SkipFirst:
    """The next pass over the sampler leaves out its first ``n`` indices (:meth:`skip_next`). They are
    still drawn, so the generator ends the pass where an uninterrupted one leaves it."""

    _skip = 0

    def skip_next(self, n: int) -> None:
        """Leave out the first ``n`` indices of the next pass only (the samples already trained on)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"skip_next: n must be an int >= 0, got {n!r}")
        self._skip = n

    def __iter__(self):
        skip, self._skip = self._skip, 0
        return itertools.islice(super().__iter__(), skip, None)  # type: ignore[misc]


class ResumableRandomSampler(_SkipFirst, RandomSampler):
    """``RandomSampler`` (the same order for the same generator state) whose next pass can start part way."""


class ResumableDistributedSampler(_SkipFirst, DistributedSampler):
    """``DistributedSampler`` (this rank's part of the permutation of ``seed + epoch``) whose next pass
    can start part way: each rank skips its own first ``steps x batch_size`` indices."""


def skip_done(loader: Any, steps: int) -> Iterable:
    """``loader`` without its first ``steps`` batches of this pass: the sampler skips them (nothing is
    read) when it can (``skip_next``), else they are loaded and dropped (a fast-forward)."""
    if steps == 0:
        return loader
    sampler = getattr(loader, "sampler", None)
    batch_size = getattr(loader, "batch_size", None)
    if hasattr(sampler, "skip_next") and batch_size:
        sampler.skip_next(steps * batch_size)
        return loader
    return itertools.islice(loader, steps, None)


def _names(dataset: Any) -> list[str] | None:
    """The samples' names, looking through wrappers (``SeededAugment``) to a dataset with ``name(i)``."""
    while dataset is not None and not hasattr(dataset, "name"):
        dataset = getattr(dataset, "dataset", None)
    return None if dataset is None else [dataset.name(i) for i in range(len(dataset))]


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies the training set: its size and a hash of its samples' names in index order (an
    index saved in a checkpoint means the same image only if both agree)."""
    names = _names(dataset)
    digest = None if names is None else hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return {"samples": len(dataset), "names_sha256": digest}


class CheckpointMismatch(ValueError):
    """A checkpoint written by another run (configuration, training set, world size)."""


def refuse_mismatch(path: Any, saved: Mapping[str, Any], here: Mapping[str, Any], what: str, remedy: str) -> None:
    """Raise :class:`CheckpointMismatch` naming every field of ``what`` (the configuration, the training
    set, the world size) where the checkpoint at ``path`` and this run differ, and ``remedy``, what to do."""
    diff = [f"{k}: checkpoint {saved.get(k)!r}, this run {here.get(k)!r}"
            for k in sorted(set(saved) | set(here)) if saved.get(k) != here.get(k)]
    if diff:
        raise CheckpointMismatch(f"{path}: written by a run with another {what} ({'; '.join(diff)}); {remedy}")


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGTERM or Ctrl-C after a checkpoint was written; the message says where
    and how to continue."""


class StopRequests:
    """Inside the block, the first SIGTERM or SIGINT (Ctrl-C, a Jupyter interrupt) only sets
    :attr:`signal`; the training loop checks it after every step, writes a checkpoint there and raises
    :class:`Interrupted`. A second one interrupts at once (``KeyboardInterrupt``). Handlers are
    installed only in the main thread (elsewhere signals cannot be caught) and restored on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._before: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt(f"signal {signum} again: stopping without a checkpoint")
        self.signal = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._before[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)
        self._before.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""
