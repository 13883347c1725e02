"""Distributed training with torchrun: 2 CPU processes (gloo) on data_sample at 48x64 with a tiny model.

The loss decreases, the same seed gives bit-identical weights, rank 0's checkpoint loads with notebook
05's code, the shard path trains too, and an error ends every process (nothing hangs: each launch is
killed after a timeout). Also: ``train_step``/``build_optimizer`` train exactly as ``train`` does.
"""
from __future__ import annotations

import re

import pytest
import torch

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.distributed import kill_launch, run_torchrun
from helpers.loader import make_loader
from helpers.project import DATA_SAMPLE
from helpers.runconfig import RunConfig
from helpers.checkpoints import load_checkpoint, load_model
from helpers.loss import POS_WEIGHT, FaceLoss
from helpers.model import build_model
from helpers.train import _reseed_loader, build_optimizer, train, train_step
from helpers.transforms import default_pipeline

TIMEOUT = 150
TINY = ["--base-channels", "4", "--levels", "2"]


def _args(checkpoint, *extra) -> list[str]:
    return ["--data", str(DATA_SAMPLE), "--checkpoint", str(checkpoint), "--epochs", "3", "--batch-size", "8",
            "--image-size", "48", "64", "--lr", "1e-2", "--seed", "7", *TINY, *extra]


def _seen(out: str) -> list[tuple[int, int, int, int]]:
    """(distinct, total, repeated, not seen) of every epoch, from rank 0's log."""
    found = re.findall(r"trained on (\d+) of (\d+) images, (\d+) repeated, (\d+) not seen", out)
    return [tuple(map(int, f)) for f in found]


def _launch(args) -> str:
    result = run_torchrun(args, nproc=2, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("ddp") / "a.pt"
    return checkpoint, _launch(_args(checkpoint, "--num-workers", "2"))


def test_two_processes_train_and_the_loss_decreases(first_run):
    checkpoint, out = first_run
    assert "world 2 x gloo on cpu" in out
    history = load_checkpoint(checkpoint)["history"]
    assert history["epoch"] == [1.0, 2.0, 3.0]
    assert history["train_loss"][-1] < history["train_loss"][0], history["train_loss"]
    assert out.count("epoch ") == 3 and "written by rank 0" in out  # rank 0 alone prints


def _lists():
    return read_file_lists(DATA_SAMPLE, 0.2, val_fraction=0.15)  # the command's default split


def test_2_processes_x_2_workers_see_every_image_once_apart_from_padding(first_run):
    _, out = first_run
    n_train = len(_lists().files_train)
    padding = -n_train % 2
    assert _seen(out) == [(n_train, n_train, padding, 0)] * 3, out


def test_per_epoch_figures_are_the_validation_split_and_the_test_split_is_scored_once(first_run):
    checkpoint, out = first_run
    lists = _lists()
    val_pixels, test_pixels = len(lists.files_val) * 48 * 64, len(lists.files_test) * 48 * 64
    epochs = re.findall(r"epoch \d/3 .* validation IoU [\d.]+ .*, (\d+) validation pixels\)", out)
    assert epochs == [str(val_pixels)] * 3, out  # each rank scored its part; the sum is the whole split
    assert "test pixels" not in out.split("test split, scored once")[0], "the test split is read only at the end"
    assert out.count("test split, scored once after the last epoch") == 1
    assert f"({len(lists.files_test)} images, {test_pixels} test pixels)" in out
    history = load_checkpoint(checkpoint)["history"]
    assert re.search(rf"epoch 3/3 .* validation IoU {history['val_iou'][-1]:.3f}", out)


def test_the_checkpoint_loads_with_the_single_process_code(first_run):
    checkpoint, _ = first_run
    state = load_checkpoint(checkpoint)
    assert state["world_size"] == 2 and state["epoch"] == 3
    model, config = load_model(checkpoint)
    assert config.image_size == (48, 64) and config.seed == 7
    assert not any(k.startswith("module.") for k in state["model"]), "saved without DDP's wrapper prefix"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 64)).shape == (1, 1, 48, 64)


def test_the_same_seed_gives_the_same_weights(first_run, tmp_path):
    checkpoint, _ = first_run
    _launch(_args(tmp_path / "b.pt", "--num-workers", "2"))  # the same command again
    a, b = load_checkpoint(checkpoint)["model"], load_checkpoint(tmp_path / "b.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_from_uneven_shards(tmp_path):
    from helpers.shards import write_shards

    names = [p.rsplit("/", 1)[-1] for p in _lists().files_train]  # the training split alone, not validation
    n = len(names)
    write_shards(DATA_SAMPLE, tmp_path / "shards", max_count=9, progress=False, names=names)  # uneven: 9, 9, ..., rest
    out = _launch(_args(tmp_path / "s.pt", "--shards", str(tmp_path / "shards"), "--epochs", "2",
                        "--num-workers", "2"))
    assert f"in {-(-n // 9)} shards" in out and n % 9
    seen = _seen(out)
    assert len(seen) == 2 and all(total == n and repeats == 0 and distinct + not_seen == n
                                  for distinct, total, repeats, not_seen in seen), out
    assert load_checkpoint(tmp_path / "s.pt")["epoch"] == 2


def test_an_error_ends_every_process(tmp_path):
    result = run_torchrun(["--data", str(tmp_path / "missing"), "--checkpoint", str(tmp_path / "x.pt")],
                          nproc=2, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "bbox.json: file not found" in result.stdout


def test_train_step_trains_exactly_as_train_does():
    lists = read_file_lists(DATA_SAMPLE, 0.2)
    config = RunConfig(name="t", n_images=64, test_fraction=0.2, data_seed=0, image_size=(48, 64), epochs=1,
                       batch_size=8, lr=1e-2, num_workers=0, seed=3)
    n = 16
    train_set = FaceDataset(lists.files_train[:n], lists.labels_train[:n], transform=default_pipeline((48, 64)))
    test_set = FaceDataset(lists.files_test[:4], lists.labels_test[:4], transform=default_pipeline((48, 64)))
    loader = make_loader(train_set, 8, shuffle=True, seed=config.seed, num_workers=0)
    test_loader = make_loader(test_set, 8, shuffle=False, seed=config.seed, num_workers=0)
    kwargs = {"base_channels": 4, "levels": 2}
    reference = train(config, loaders=(loader, test_loader), device="cpu", model_kwargs=kwargs, face_fraction=0.1,
                      progress=False, log=None).model

    torch.manual_seed(config.seed)
    model = build_model(**kwargs).to(memory_format=torch.channels_last)
    loss_fn = FaceLoss(POS_WEIGHT)  # train's default
    optimizer, scheduler = build_optimizer(model, config, len(loader))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    _reseed_loader(loader, config.seed)
    for batch in loader:
        train_step(model, batch, loss_fn, optimizer, scheduler, scaler, torch.device("cpu"), channels_last=True)
    for (k, a), b in zip(reference.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


# A 2-process run killed with SIGKILL in the middle of an epoch, then resumed (helpers.resume). The
# launched script is helpers.distributed itself; once rank 0 has written the checkpoint at (epoch,
# step) it says so and waits, and the test kills the whole process group (torchrun and both ranks).
KILLED = """
import sys, time
from pathlib import Path
import helpers.checkpoints as C
from helpers import distributed

real = C.save_checkpoint

def save_then_wait(path, *args, position=None, **kwargs):
    real(path, *args, position=position, **kwargs)
    if position and (position["epoch"], position["steps"]) == (1, 1):
        Path(str(path) + ".ready").write_text("")
        time.sleep(600)

C.save_checkpoint = save_then_wait
sys.exit(distributed.main(sys.argv[1:]))
"""


def _kill_mid_epoch(tmp_path, checkpoint) -> None:
    import os
    import subprocess
    import sys
    import time

    from helpers.project import ROOT

    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    ready = checkpoint.with_name(checkpoint.name + ".ready")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           *_args(checkpoint, "--num-workers", "2", "--save-every", "4")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate(timeout=30)[0][-4000:] if proc.poll() is not None else "timed out"
    finally:
        if proc.poll() is None:
            kill_launch(proc.pid)  # torchrun and both ranks (each in its own session), with their workers
        proc.communicate(timeout=30)


def test_two_processes_killed_mid_epoch_resume_to_the_same_weights_each_image_once(first_run, tmp_path):
    reference, _ = first_run
    checkpoint = tmp_path / "killed.pt"
    _kill_mid_epoch(tmp_path, checkpoint)  # 3 steps per epoch: killed after step 4, 1 step into epoch 2
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 1 and state["position"] == {"epoch": 1, "steps": 1}
    assert [len(part["names"]) for part in state["ranks"]] == [8, 8]  # each rank's own first batch
    refused = run_torchrun(_args(checkpoint, "--num-workers", "2", "--resume", str(checkpoint)), nproc=1,
                           timeout=TIMEOUT)
    assert refused.returncode != 0
    assert ("another world size (world_size: checkpoint 2, this run 1); resume with torchrun "
            "--nproc_per_node=2") in refused.stdout, refused.stdout[-3000:]
    out = _launch(_args(checkpoint, "--num-workers", "2", "--resume", str(checkpoint)))
    assert "resuming at step 1/3 of epoch 2" in out
    n_train = len(_lists().files_train)
    assert _seen(out) == [(n_train, n_train, 0, 0)] * 2, out  # the interrupted epoch (2) and the last
    a, b = load_checkpoint(reference)["model"], load_checkpoint(checkpoint)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
