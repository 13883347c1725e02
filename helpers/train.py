"""Training the per-pixel face classifier: one optimisation step (:func:`train_step`), one epoch
(:func:`train_one_epoch`), and the outer loop a real run needs around them (:func:`train`: resume,
per-epoch validation, logging, checkpoints, CPU threads beside the loader's workers), plus the
command line ``python -m helpers.train`` that trains, then scores the test split once.

Three splits (:func:`helpers.data_path.build_loaders`): the network learns on ``train``; every choice
and every per-epoch figure (``val_*``) uses ``val``; ``test`` is scored once, by
:func:`helpers.evaluation.final_test`, after all choices are made. The network's output,
``sigmoid(logit)``, is trained as a face probability: the default loss is plain binary cross-entropy
(:class:`helpers.loss.FaceLoss` with no positive weight and no Dice term, both chosen on validation);
appendix 05b §2 measures how calibrated it comes out.

One code path for every device: CUDA gets mixed precision (bf16 where supported, else fp16 with a
gradient scaler), ``channels_last`` and ``cudnn.benchmark``; a CPU runs the same loop in float32.
Images leave the DataLoader as ``uint8`` and are normalised on the device (:mod:`helpers.on_device`).

Notebooks: 05 teaches it; 07, 08 use it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .checkpoints import restore_rng_state, load_checkpoint, save_checkpoint
from .data_path import build_loaders, check_loaders
from .evaluation import Evaluation, evaluate, evaluation_table, final_test, split_distractors
from .loss import POS_WEIGHT, FaceLoss, face_pixel_fraction
from .model import MODEL_DEFAULTS, FaceUNet
from .on_device import amp_settings, prepare_batch
from .runconfig import RunConfig

__all__ = [
    "History", "HISTORY_KEYS", "new_history", "TrainResult", "usable_cores", "threads_beside_workers",
    "torch_threads", "build_optimizer", "train_step", "train_one_epoch", "train", "main",
]

#: Keys of the per-epoch log; each holds one value per finished epoch. ``val_*``: the VALIDATION split.
HISTORY_KEYS = ("epoch", "lr", "train_loss", "val_loss", "val_iou", "val_dice", "val_precision",
                "val_recall", "seconds", "val_seconds", "wait_fraction")

#: The per-epoch log: key -> one float per finished epoch (a plain dict of lists, so it checkpoints).
History = dict[str, list[float]]


def new_history() -> History:
    """An empty per-epoch log with every key of :data:`HISTORY_KEYS`."""
    return {k: [] for k in HISTORY_KEYS}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_beside_workers(num_workers: int, cores: int | None = None) -> int:
    """Intra-op threads for the main process when ``num_workers`` DataLoader workers share the cores.

    A worker may keep a core busy decoding, and torch's threads in the main process wait for one
    another at every operation (OpenMP spins while it waits), so more threads than free cores make
    every step wait for the slowest: on a machine shared with other busy processes, 2 threads ran at
    0.50x the speed of 1, against 1.21x on an idle one (``python tools/threads_under_load.py``,
    docs/benchmarks.md); ``train(threads=...)`` chooses (``python -m helpers.lab.bench training
    --threads default 2`` measures the whole loop).
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
    that both give the same weights; ``train`` keeps its lines inline, beside the rest of its setup)."""
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
                    on_step: Callable[[int], Any] | None = None, done: tuple[float, int, float] = (0.0, 0, 0.0),
                    after_step: Callable[[float, int, float], Any] | None = None) -> tuple[float, int, float]:
    """One pass over ``loader``: a :func:`train_step` per batch. Returns (mean loss, steps, seconds spent
    waiting for the loader), the last being what shows whether the data pipeline keeps up.
    ``on_step(1)`` is called after each step (a progress bar's ``update``). Resuming inside an epoch:
    ``done`` is the (loss sum, steps, wait) of its part already trained, and ``after_step(loss sum,
    steps, wait)`` is called after each step (where :func:`train` writes mid-epoch checkpoints)."""
    model.train()
    loss_sum, steps, wait = done
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
        if after_step is not None:
            after_step(loss_sum, steps, wait)
    return loss_sum / max(steps, 1), steps, wait


class TrainResult(NamedTuple):
    """What :func:`train` returns: the trained model (eval mode), the per-epoch history, the last
    :class:`helpers.evaluation.Evaluation` on the VALIDATION split (never the test split), the measured face-pixel
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
    dice_weight: float = 0.0,
    pos_weight: float | None = None,
    weight_decay: float = 1e-4,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    stop_after: int | None = None,
    save_every: int | None = None,
    channels_last: bool = True,
    threads: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train a :class:`FaceUNet` on ``config`` and return it with its history.

    - ``loaders``: :class:`helpers.data_path.Loaders` or ``(train_loader, val_loader)``, default
      :func:`helpers.data_path.build_loaders` (the data set must exist). Only ``train`` and ``val`` are
      used: the per-epoch ``val_*`` figures are the VALIDATION split's, and the test split is never
      touched (score it once afterwards with :func:`helpers.evaluation.final_test`). The train loader's
      sampler is reseeded with ``config.seed + epoch`` at every epoch, so the order of epoch ``e`` does
      not depend on how many epochs ran before (exact resumption).
    - Device: ``device`` or ``pick_device()``. CUDA: autocast (bf16, else fp16 + GradScaler),
      ``cudnn.benchmark``. ``channels_last`` on every device (it also speeds up CPU convolutions).
    - Loss: :class:`helpers.loss.FaceLoss` with ``pos_weight = POS_WEIGHT`` (1: no weight) and
      ``dice_weight`` 0 (no Dice term), unless given (``python -m helpers.lab.tune`` compares them), the face-pixel fraction measured on the
      training loader unless given (logged, and saved); AdamW, OneCycle LR (warm-up then cosine decay,
      per step).
    - ``checkpoint_path``: a checkpoint is written there after every epoch; ``resume_from`` continues
      from one (same config; the model size, face fraction and loss weights come from the checkpoint,
      the shuffling from the epoch number, the RNG states are restored); ``stop_after``: stop after
      that many epochs in total (to simulate an interruption). Inside an epoch (:mod:`helpers.resume`):
      ``save_every=N`` also writes one every N steps, and a SIGTERM or Ctrl-C writes one after the
      current step, then raises :class:`helpers.resume.Interrupted`; resuming from such a checkpoint
      continues with the next batch (the sampler skips the epoch's samples already trained on) and
      gives the weights of an uninterrupted run, bit for bit (with the same ``threads``). A checkpoint
      of another configuration or training set is refused, naming what differs. The per-epoch log goes to ``log`` (``None``: silent); ``progress``: tqdm bars
      (default: on, unless ``FACES_PROGRESS=0``, which ``make run/test/refresh`` set).
    - CPU threads: on a CPU, torch's intra-op threads for the epoch loop are ``threads``, by default
      the cores the DataLoader workers leave (:func:`threads_beside_workers`), and are restored after.
      On an idle machine more threads can be faster (docs/benchmarks.md measures it); the default is
      the one that stays fast when other processes share the cores. The thread count changes the
      floating-point summation order, so runs with different counts give (slightly) different weights.
    """
    from tqdm.auto import tqdm

    from .notebook import progress_bars
    from .resume import Interrupted, StopRequests, data_fingerprint, refuse_mismatch, skip_done
    from .setup_env import pick_device

    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}: need at least 1 (None: threads_beside_workers)")
    if save_every is not None and save_every < 1:
        raise ValueError(f"save_every={save_every}: need at least 1 step (None: after every epoch only)")
    progress = progress_bars() if progress is None else progress
    device = torch.device(device or pick_device())
    state = None
    if resume_from is not None:
        state = load_checkpoint(resume_from, map_location=device)
        refuse_mismatch(resume_from, state["config"], config.as_dict(), "configuration",
                        "resume with the same configuration, or start afresh without resuming")
        model_kwargs = state.get("model_kwargs", model_kwargs)
        face_fraction = state.get("face_fraction", face_fraction)
        dice_weight = state.get("dice_weight", dice_weight)
        pos_weight = state.get("pos_weight", pos_weight)
    model_kwargs = {**MODEL_DEFAULTS, **(model_kwargs or {})}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
    train_loader, val_loader = tuple(loaders if loaders is not None else build_loaders(config, device))[:2]
    check_loaders(train_loader, val_loader)
    data = data_fingerprint(train_loader.dataset) if hasattr(train_loader, "dataset") else None
    if state is not None and state.get("data") is not None and data is not None:
        refuse_mismatch(resume_from, state["data"], data, "training set",
                        "resume on the same data folder and split, or start afresh without resuming")
    if face_fraction is None:
        face_fraction = face_pixel_fraction(train_loader)
    if pos_weight is None:  # the default, chosen on validation (helpers.loss.POS_WEIGHT)
        pos_weight = POS_WEIGHT

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
    history, start, resumed_part = new_history(), 0, ((0.0, 0, 0.0), 0.0)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, start = {k: list(v) for k, v in state["history"].items()}, state["epoch"]
        restore_rng_state(state["rng"])
        if state.get("position"):  # a mid-epoch checkpoint: the part of epoch `start` already trained
            p = state["position"]
            resumed_part = ((p["loss_sum"], p["steps"], p["wait"]), p["seconds"])
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    evaluation = None
    workers = getattr(train_loader, "num_workers", 0)
    if device.type != "cpu":
        threads = torch.get_num_threads()
    elif threads is None:
        threads = threads_beside_workers(workers)
    if log:
        log(f"device {device} | face pixels {face_fraction:.3f} -> pos_weight {pos_weight:.2f} | "
            f"{steps_per_epoch} steps/epoch | amp {amp_dtype if amp_on else 'off'}"
            + (f" | {threads} torch thread(s) beside {workers} loader worker(s)" if device.type == "cpu" else "")
            + (f" | resuming after epoch {start}" if start or resumed_part[0][1] else "")
            + (f", step {resumed_part[0][1]}/{steps_per_epoch} of epoch {start + 1}" if resumed_part[0][1] else ""))

    def save(epochs_done: int, position: dict | None = None) -> None:
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler, config, epochs_done, history,
                        model_kwargs=dict(model_kwargs), face_fraction=float(face_fraction),
                        dice_weight=float(dice_weight), pos_weight=float(pos_weight), data=data, position=position)

    def after_step(loss_sum: float, steps: int, wait: float) -> None:  # mid-epoch checkpoints (helpers.resume)
        step = epoch * steps_per_epoch + steps
        if stop.signal is None and not (save_every and step % save_every == 0):
            return
        if checkpoint_path is not None:
            save(epoch, {"epoch": epoch, "steps": steps, "loss_sum": loss_sum, "wait": wait,
                         "seconds": seconds_before + time.perf_counter() - t_start})
        if stop.signal is not None:
            where = f"step {steps}/{steps_per_epoch} of epoch {epoch + 1}"
            if checkpoint_path is None:
                raise KeyboardInterrupt(f"{stop.name} at {where}; no checkpoint_path, so nothing was saved")
            raise Interrupted(f"{stop.name} at {where}: checkpoint {checkpoint_path} written; continue with "
                              f"train(..., resume_from=...) or python -m helpers.train --resume {checkpoint_path}")

    with torch_threads(threads), StopRequests() as stop:  # see threads_beside_workers; SIGTERM/Ctrl-C: after_step
        for epoch in range(start, end):
            _reseed_loader(train_loader, config.seed + epoch)
            set_epoch = getattr(getattr(train_loader, "dataset", None), "set_epoch", None)
            if set_epoch is not None:  # SeededAugment: this epoch's random draws (see build_loaders' augment)
                set_epoch(epoch)
            done, seconds_before = resumed_part if epoch == start else ((0.0, 0, 0.0), 0.0)
            t_start = time.perf_counter()
            # mininterval: a few refreshes per epoch, so a notebook's output (and nbval, which reads it only
            # after the cell ends and loses messages past ZMQ's high-water mark) is not flooded.
            with tqdm(total=steps_per_epoch, initial=done[1], desc=f"epoch {epoch + 1}/{config.epochs}",
                      disable=not progress, leave=False, mininterval=2.0) as bar:
                # skip_done: a resumed epoch goes on from the next batch; its sampler skips what was done
                epoch_loss, n, wait = train_one_epoch(model, skip_done(train_loader, done[1]), loss_fn, optimizer,
                                                      scheduler, scaler, device, channels_last, on_step=bar.update,
                                                      done=done, after_step=after_step)
            seconds = seconds_before + time.perf_counter() - t_start
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
                save(epoch + 1)
    model.eval()
    return TrainResult(model, history, evaluation, float(face_fraction), str(device))


# --- command line: the run behind the figures the notebook and README quote ------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.train [--config quick|full]``: generate the data set if needed, train, choose
    the colour baseline's bins on validation, report the VALIDATION figures of both, then score both
    ONCE on the test split (:func:`helpers.evaluation.final_test`): IoU/Dice/precision/recall, box recall, face-level
    precision/recall and false faces (on distractors apart), the time and the waiting fraction.
    Writes the checkpoint under ``outputs/checkpoints/`` (``--checkpoint``), also every ``--save-every``
    steps and on SIGTERM / Ctrl-C; ``--resume CHECKPOINT`` continues an interrupted run from its next batch."""
    import argparse
    import sys

    from . import baseline
    from .resume import CheckpointMismatch, Interrupted
    from .project import OUTPUTS, relative, write_json
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
    p.add_argument("--save-every", type=int, default=None, metavar="STEPS",
                   help="also write the checkpoint every STEPS training steps, inside epochs (SIGTERM and Ctrl-C "
                        "write one too)")
    p.add_argument("--resume", type=Path, default=None, metavar="CHECKPOINT",
                   help="continue the run that wrote CHECKPOINT from its next batch (same --config); "
                        "the checkpoint is written there again unless --checkpoint says otherwise")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    args = p.parse_args(argv)

    device = pick_device()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("num_workers", args.num_workers)) if v is not None}
    config = pick_config(args.config, device=device, **overrides)
    print(f"{config.name}: {config} on {describe_device(device)}")
    ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=not args.no_progress)
    checkpoint = args.checkpoint or args.resume or OUTPUTS / "checkpoints" / f"faces-{config.name}-benchmark.pt"
    loaders = build_loaders(config, device, keep_test_boxes=True)
    t0 = time.perf_counter()
    try:
        result = train(config, loaders=loaders, device=device, checkpoint_path=checkpoint, resume_from=args.resume,
                       save_every=args.save_every, progress=False if args.no_progress else None)
    except Interrupted as stopped:  # SIGTERM / Ctrl-C: the checkpoint is written, the message says how to go on
        print(stopped, file=sys.stderr)
        return 130
    except CheckpointMismatch as refused:  # a checkpoint of another run: the message says what differs
        print(f"python -m helpers.train: {refused}", file=sys.stderr)
        return 2
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
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
