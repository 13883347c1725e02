"""Data-parallel training on several processes with ``torch.distributed`` (``torchrun``), the same model,
loss and training step as :mod:`helpers.train`.

Run it as ``torchrun --nproc_per_node=2 -m helpers.distributed --data DATA_DIR --checkpoint CKPT``.
``torchrun`` starts one process per GPU (or per CPU share) and gives each ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; every process builds the same model from the same seed, ``DistributedDataParallel``
(DDP) averages the gradients in ``backward`` so the copies stay identical, and each process reads its
own part of the data:

- the folder (map-style) path: ``DistributedSampler`` gives rank r every ``world_size``-th index of a
  permutation fixed by (seed, epoch); ``set_epoch`` must be called every epoch or every epoch repeats
  the first one's order. It pads with repeats so that all ranks take the same number of steps.
- the shard path (``--shards DIR``): :class:`helpers.shards.ShardDataset` gives each (rank, worker) its
  own shards. Nothing is repeated, so the ranks can hold different sample counts; every rank stops
  after the smallest rank's number of batches (a DDP step needs every rank), dropping the others' tail.

The backend is chosen from the device: NCCL with one GPU per process, gloo on the CPU (one thread per
process). Only gloo has run here (the tests and notebook 07 run on a CPU); the NCCL branch is the same
code with ``device_ids`` set, and has not been run on GPUs yet. The epoch's loss and the VALIDATION
metrics are summed over the processes (``all_reduce``): each rank scores its own part of the validation
split, so every validation image is scored once per epoch. The TEST split is scored once, after the
last epoch, the same way, and labelled as such (the same rule as notebook 05: per-epoch figures come
from validation, the test split is read once, at the end). The split is the one of
:func:`helpers.datafiles.read_file_lists` with ``--val-fraction`` (the training images are the rest).
Only rank 0 prints and writes the checkpoint, in :func:`helpers.checkpoints.save_checkpoint`'s format,
so :func:`helpers.checkpoints.load_model` reads it. The process group is destroyed on exit and on error.

Resuming inside an epoch (the folder path, :mod:`helpers.resume`): ``--save-every N`` writes the
checkpoint every N steps too, and SIGTERM or Ctrl-C on any rank one after the current step (the ranks
agree on it with an ``all_reduce`` after every step). The checkpoint holds every rank's own part
(RNG states, loss sum, the names trained on so far), gathered by rank 0. ``--resume CKPT`` continues
from the next batch: the step count is the same on every rank, and each rank's
``ResumableDistributedSampler`` skips its own part of what was done, so over all ranks each sample is
still seen once in the interrupted epoch. A checkpoint of another configuration, training set or world
size is refused, naming what differs.

Notebooks: 07 teaches it.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .project import ROOT, relative


def setup() -> tuple[int, int, torch.device, str]:
    """Join the process group ``torchrun`` describes (env ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    returns ``(rank, world_size, device, backend)``: NCCL and ``cuda:LOCAL_RANK`` when CUDA is available,
    else gloo on the CPU with one thread per process (the processes share the cores)."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(1)
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device, backend


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """The elementwise sum of ``values`` over all processes (float64, on the backend's device)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def map_style_loader(dataset, batch_size: int, rank: int, world_size: int, seed: int, num_workers: int,
                     pin_memory: bool, drop_last: bool = False) -> DataLoader:
    """The folder path: a ``DistributedSampler`` (shuffled by seed and epoch; padded unless ``drop_last``)."""
    from .loader import seed_worker

    from .resume import ResumableDistributedSampler

    sampler = ResumableDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, worker_init_fn=seed_worker, persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m helpers.distributed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True,
                   help="data folder (images + bbox.json): its validation split is scored every epoch, its test split once")
    p.add_argument("--shards", type=Path, default=None,
                   help="train from these shards (helpers.shards) instead of the folder's train split")
    p.add_argument("--checkpoint", type=Path, required=True, help="where rank 0 writes the checkpoint")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps in total")
    p.add_argument("--batch-size", type=int, default=8, help="per process (the global batch is N times larger)")
    p.add_argument("--image-size", type=int, nargs=2, default=[120, 160], metavar=("H", "W"))
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per process")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="share of the images held out for validation (out of the training images; default 0.15)")
    p.add_argument("--base-channels", type=int, default=None, help="model size (default helpers.train's)")
    p.add_argument("--levels", type=int, default=None, help="model depth (default helpers.train's)")
    p.add_argument("--face-fraction", type=float, default=None,
                   help="share of face pixels, for the loss weight (default: measured in one pass over the data)")
    p.add_argument("--log-every", type=int, default=0, help="print rank 0's loss every N steps (0: per epoch only)")
    p.add_argument("--save-every", type=int, default=None, metavar="STEPS",
                   help="also write the checkpoint every STEPS steps, inside epochs (SIGTERM and Ctrl-C write one too)")
    p.add_argument("--resume", type=Path, default=None, metavar="CHECKPOINT",
                   help="continue the run that wrote CHECKPOINT from its next batch (same arguments and world size)")
    p.add_argument("--stop-after-steps", type=int, default=None, metavar="K",
                   help="rehearse an interruption: write the checkpoint after step K and stop (resume with --resume)")
    return p


def train_distributed(args: argparse.Namespace) -> dict[str, Any]:
    """The training run of one process (call it in every process, after :func:`setup`)."""
    from .datafiles import read_file_lists
    from .dataset import FaceDataset
    from .runconfig import RunConfig
    from .shards import batches_per_rank, make_shard_loader, read_index, samples_per_rank, shard_paths
    from .checkpoints import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
    from .resume import Interrupted, StopRequests, data_fingerprint, refuse_mismatch, skip_done
    from .loss import POS_WEIGHT, FaceLoss, face_pixel_fraction
    from .model import MODEL_DEFAULTS, build_model
    from .on_device import amp_settings
    from .train import build_optimizer, new_history, train_step
    from .transforms import default_pipeline

    rank, world, device = dist.get_rank(), dist.get_world_size(), _device()
    say = print if rank == 0 else (lambda *a, **k: None)
    size = tuple(args.image_size)
    lists = read_file_lists(args.data, args.test_fraction, val_fraction=args.val_fraction)
    pin = device.type == "cuda"
    workers = max(1, args.num_workers)
    if args.shards is None:
        train_set = FaceDataset(lists.files_train, lists.labels_train, transform=default_pipeline(size), root=args.data)
        loader = map_style_loader(train_set, args.batch_size, rank, world, args.seed, args.num_workers, pin)
        n_train, steps_per_epoch = len(train_set), len(loader)
        source = f"{n_train} train images, {len(loader.sampler)} per rank (padding {len(loader.sampler) * world - n_train})"
    else:
        counts = [s["count"] for s in read_index(args.shards)["shards"]]
        loader = make_shard_loader(shard_paths(args.shards), args.batch_size, transform=default_pipeline(size),
                                   num_workers=args.num_workers, seed=args.seed, shuffle_buffer=4 * args.batch_size,
                                   pin_memory=pin, persistent_workers=False)
        n_train = sum(counts)
        # every rank computes every rank's batch count from the index: the same answer, no communication
        steps_per_epoch = min(min(batches_per_rank(counts, world, workers, args.batch_size, args.seed, e))
                              for e in range(args.epochs))
        source = f"{n_train} train images in {len(counts)} shards, {steps_per_epoch} steps on every rank"
        if steps_per_epoch == 0:
            raise ValueError(f"{relative(args.shards)}: {len(counts)} shards leave a rank without data; write at "
                             f"least {world} x {workers} (processes x workers) shards")
    total_steps = steps_per_epoch * args.epochs if args.steps is None else min(args.steps, steps_per_epoch * args.epochs)
    epochs = math.ceil(total_steps / steps_per_epoch)
    config = RunConfig(name="distributed",
                       n_images=len(lists.files_train) + len(lists.files_val) + len(lists.files_test),
                       test_fraction=args.test_fraction, data_seed=0, image_size=size, epochs=epochs,
                       batch_size=args.batch_size, lr=args.lr, num_workers=args.num_workers, seed=args.seed,
                       val_fraction=args.val_fraction)

    state, data = None, data_fingerprint(train_set) if args.shards is None else None
    if args.resume is not None or args.save_every or args.stop_after_steps:
        if args.shards is not None:
            raise ValueError("--resume, --save-every and --stop-after-steps are for the folder path; with --shards "
                             "a run resumes only from its start")
    if args.resume is not None:
        state = load_checkpoint(args.resume)
        refuse_mismatch(args.resume, state["config"], config.as_dict(), "configuration",
                        "resume with the same arguments (--epochs, --steps, --batch-size, --lr, --seed, ...)")
        refuse_mismatch(args.resume, {"world_size": state.get("world_size")}, {"world_size": world}, "world size",
                        f"resume with torchrun --nproc_per_node={state.get('world_size')}: each rank's position "
                        "is its share of the epoch")
        refuse_mismatch(args.resume, state.get("data") or {}, data, "training set",
                        "resume with the same --data, --test-fraction and --val-fraction")

    # validation and test, each cut into disjoint parts without padding: every image is scored exactly once
    val_loader = _part_loader(lists.files_val, lists.labels_val, size, args, rank, world)
    test_loader = _part_loader(lists.files_test, lists.labels_test, size, args, rank, world)

    if hasattr(loader, "sampler") and isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(0)
    else:
        loader.dataset.set_epoch(0)
    if state is not None:
        face_fraction = state["face_fraction"]
    elif args.face_fraction is None:
        frac_here = face_pixel_fraction(loader)  # one pass over this rank's part; all images have one size
        n_here = len(loader.sampler) if args.shards is None else samples_per_rank(counts, world, workers, args.seed)[rank]
        face_sum, n_sum = all_reduce_sum([frac_here * n_here, n_here], device)
        face_fraction = face_sum / n_sum
    else:
        face_fraction = args.face_fraction

    model_kwargs = {**MODEL_DEFAULTS, **{k: v for k, v in (("base_channels", args.base_channels),
                                                          ("levels", args.levels)) if v is not None}}
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(**model_kwargs).to(device, memory_format=torch.channels_last)
    if state is not None:
        model.load_state_dict(state["model"])  # before DDP, which broadcasts rank 0's weights
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = FaceLoss(POS_WEIGHT).to(device)  # the default of helpers.train
    optimizer, scheduler = build_optimizer(ddp, config, total_steps)
    amp_on, amp_dtype = amp_settings(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_on and amp_dtype == torch.float16)
    history, start, mine = new_history(), 0, {"loss_sum": 0.0, "steps": 0, "wait": 0.0, "names": []}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, start = {k: list(v) for k, v in state["history"].items()}, state["epoch"]
        own = state["ranks"][rank]  # this rank's own part: its RNG states, and where it was in the epoch
        restore_rng_state(own["rng"])
        if state.get("position"):
            mine = {k: own[k] for k in mine}

    def save(epochs_done: int, part: dict | None = None) -> None:  # every rank calls it; rank 0 writes
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, {"rng": rng_state(), **(part or {})})
        if rank == 0:
            save_checkpoint(args.checkpoint, model, optimizer, scheduler, scaler, config, epochs_done, history,
                            model_kwargs=dict(model_kwargs), face_fraction=float(face_fraction),
                            dice_weight=float(loss_fn.dice_weight), world_size=world, data=data, ranks=parts,
                            position={"epoch": epochs_done, "steps": part["steps"]} if part else None)
    say(f"world {world} x {dist.get_backend()} on {device.type} | {source} | {steps_per_epoch} steps/epoch, "
        f"{total_steps} in total | face pixels {face_fraction:.3f}")

    if mine["steps"]:
        say(f"resuming at step {mine['steps']}/{steps_per_epoch} of epoch {start + 1}")
    step = start * steps_per_epoch + mine["steps"]
    stop = StopRequests().__enter__()  # SIGTERM / Ctrl-C: stop after the current step, on every rank
    for epoch in range(start, epochs):
        if args.shards is None:
            loader.sampler.set_epoch(epoch)  # without it every epoch repeats epoch 0's order
        else:
            loader.dataset.set_epoch(epoch)
        ddp.train()
        loss_sum, n, wait, names = mine["loss_sum"], mine["steps"], mine["wait"], list(mine["names"])
        mine = {"loss_sum": 0.0, "steps": 0, "wait": 0.0, "names": []}
        t_start = time.perf_counter()
        it = iter(skip_done(loader, n))  # a resumed epoch: this rank's sampler skips its part of what was done
        while n < steps_per_epoch and step < total_steps:
            t0 = time.perf_counter()
            batch = next(it)
            wait += time.perf_counter() - t0
            names += list(batch["name"])
            loss = train_step(ddp, batch, loss_fn, optimizer, scheduler, scaler, device, channels_last=True)
            loss_sum, n, step = loss_sum + loss, n + 1, step + 1
            if args.log_every and step % args.log_every == 0:
                say(f"  step {step:>3}  rank-0 loss {loss:.4f}")
            signalled = all_reduce_sum([stop.signal is not None], device)[0] > 0  # the ranks stop together
            if signalled or step == args.stop_after_steps or (args.save_every and step % args.save_every == 0):
                save(epoch, {"loss_sum": loss_sum, "steps": n, "wait": wait, "names": names})
                where = f"step {n}/{steps_per_epoch} of epoch {epoch + 1} (step {step})"
                say(f"  checkpoint at {where}")
                if signalled or step == args.stop_after_steps:
                    stop.__exit__()
                    dist.barrier()
                    message = (f"stopped at {where}: {'signal' if signalled else '--stop-after-steps'}; continue "
                               f"with --resume {relative(args.checkpoint)}")
                    if signalled:
                        raise Interrupted(message)
                    say(message)
                    return {"history": history, "steps": step, "test": None}
        del it
        seconds = time.perf_counter() - t_start
        t_val = time.perf_counter()
        c, val_loss = evaluate_parts(model, val_loader, loss_fn, device)
        val_seconds = time.perf_counter() - t_val
        loss_total, batches = all_reduce_sum([loss_sum, n], device)
        row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": loss_total / batches,
               "val_loss": val_loss, "val_iou": c.iou, "val_dice": c.dice,
               "val_precision": c.precision, "val_recall": c.recall, "seconds": seconds,
               "val_seconds": val_seconds, "wait_fraction": wait / seconds if seconds > 0 else 0.0}
        for k in history:
            history[k].append(float(row[k]))
        say(f"epoch {epoch + 1}/{epochs}  loss {row['train_loss']:.4f}  validation IoU {c.iou:.3f}  "
            f"Dice {c.dice:.3f}  ({n} steps x {world} processes, {c.total} validation pixels)")
        seen = seen_report(names, n_train)
        say(f"  trained on {seen['distinct']} of {n_train} images, {seen['repeats']} repeated, "
            f"{seen['not_seen']} not seen this epoch")
        save(epoch + 1)
    stop.__exit__()
    # the test split, once, after the last epoch: nothing above read it
    t, _ = evaluate_parts(model, test_loader, loss_fn, device)
    say(f"test split, scored once after the last epoch: IoU {t.iou:.3f}  Dice {t.dice:.3f}  P {t.precision:.3f}  "
        f"R {t.recall:.3f}  ({len(lists.files_test)} images, {t.total} test pixels)")
    dist.barrier()  # the checkpoint exists before any process returns
    say(f"checkpoint {relative(args.checkpoint)} (written by rank 0)")
    return {"history": history, "steps": step, "test": t.as_dict()}


def _part_loader(files: Sequence[str], labels: Sequence, size: tuple[int, int], args: argparse.Namespace,
                 rank: int, world: int) -> DataLoader:
    """This rank's part of a split to score: every ``world``-th image from ``rank`` on (no padding)."""
    from .dataset import FaceDataset
    from .transforms import default_pipeline

    dataset = FaceDataset(files, labels, transform=default_pipeline(size), root=args.data)
    return DataLoader(Subset(dataset, range(rank, len(dataset), world)), batch_size=args.batch_size,
                      shuffle=False, num_workers=0)


def evaluate_parts(model: torch.nn.Module, loader: DataLoader, loss_fn, device: torch.device):
    """Score this rank's part of a split and sum the pixel counts (and the loss) over every rank: the
    figures of the whole split, the same on every rank. Returns ``(counts, mean batch loss)``."""
    from .evaluation import evaluate

    ev = evaluate(model, loader, device, loss_fn=loss_fn, channels_last=True)
    c = ev.counts
    n_batches = len(loader)
    tp, fp, fn, tn, loss_total, batches = all_reduce_sum(
        [c.tp, c.fp, c.fn, c.tn, ev.loss * n_batches if n_batches else 0.0, n_batches], device)
    c.tp, c.fp, c.fn, c.tn = int(tp), int(fp), int(fn), int(tn)
    return c, loss_total / max(batches, 1)


def seen_report(names: Sequence[str], n_total: int) -> dict[str, int]:
    """Gather the sample names every process trained on this epoch and count them (the same result
    on every rank): ``distinct``, ``repeats`` (padding) and ``not_seen`` (``drop_last``, shard tails)."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(names))
    counts = collections.Counter(name for part in gathered for name in part)
    return {"distinct": len(counts), "repeats": sum(counts.values()) - len(counts),
            "not_seen": n_total - len(counts)}


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if "RANK" not in os.environ:
        _parser().error("start it with torchrun: torchrun --nproc_per_node=2 -m helpers.distributed ...")
    from .resume import Interrupted

    setup()
    try:
        train_distributed(args)
    except Interrupted as stopped:  # SIGTERM / Ctrl-C: the checkpoint is written; the message says how to go on
        if dist.get_rank() == 0:
            print(stopped, file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


# ----------------------------------------------------------------------------- launching from Python


def torchrun_command(script_args: Sequence[str], nproc: int = 2) -> list[str]:
    """The ``torchrun`` command line (as ``python -m torch.distributed.run``) for one machine: the
    ``--standalone`` rendezvous on a free local port."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "helpers.distributed", *map(str, script_args)]


def kill_launch(pid: int) -> None:
    """SIGKILL a launch started with ``start_new_session=True``: its process group, and the group of each
    of its children (torchrun starts every rank in a session of its own, with the rank's loader workers),
    so nothing is left running (Linux: the children are read from ``/proc``)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    own = os.getpgid(0)
    for child in children:
        try:
            group = os.getpgid(child)
            if group != own:
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_torchrun(script_args: Sequence[str], nproc: int = 2, timeout: float = 120,
                 retries: int = 1) -> subprocess.CompletedProcess:
    """Run :func:`torchrun_command` from the repository root and return its output; the whole process
    group is killed after ``timeout`` seconds (nothing is left hanging), and a start that failed on a
    port already in use is retried ``retries`` times."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    for attempt in range(retries + 1):
        proc = subprocess.Popen(torchrun_command(script_args, nproc), cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_launch(proc.pid)
            out, _ = proc.communicate()
            raise TimeoutError(f"torchrun did not finish in {timeout:.0f} s; output:\n{out}") from None
        finally:
            if proc.poll() is None:
                kill_launch(proc.pid)
                proc.wait()
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
        if proc.returncode == 0 or "Address already in use" not in out or attempt == retries:
            return result
    return result


if __name__ == "__main__":
    sys.exit(main())
