"""Resuming in the middle of an epoch (helpers.resume): a run killed with SIGKILL after a mid-epoch
checkpoint, resumed, ends with the weights of an uninterrupted run, bit for bit, at 0 and 2 workers;
SIGTERM writes a checkpoint after the current step; a checkpoint of another configuration or
training set is refused, naming what differs. On data_sample at 48x64 with a tiny model.

Every child process runs in its own process group, killed after a timeout: nothing is left hanging.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from helpers.checkpoints import load_checkpoint
from helpers.data_path import build_loaders
from helpers.project import DATA_SAMPLE, ROOT
from helpers.resume import Interrupted, ResumableRandomSampler, skip_done
from helpers.runconfig import RunConfig
from helpers.train import train

TINY = {"base_channels": 4, "levels": 2}
TIMEOUT = 150
STEPS_PER_EPOCH = 6  # data_sample's 42 training images in batches of 8


def config(workers: int = 0, **kw) -> RunConfig:
    return RunConfig(**{"name": "resume-test", "n_images": 64, "test_fraction": 0.2, "data_seed": 0,
                        "image_size": (48, 64), "epochs": 2, "batch_size": 8, "lr": 1e-2, "num_workers": workers,
                        "data_folder": str(DATA_SAMPLE), **kw})


def run(cfg: RunConfig, checkpoint=None, **kw):
    """In this process: build_loaders' path (64-sample loader batches cut into 8, augmentation on),
    one torch thread, as the child below."""
    return train(cfg, loaders=build_loaders(cfg, "cpu", augment=True), device="cpu", model_kwargs=TINY,
                 checkpoint_path=checkpoint, threads=1, progress=False, log=None, **kw)


# The child: the same run, with a checkpoint every 4 steps; once the one at (epoch, step) is on disk
# it says so and waits to be killed.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import helpers.train as T
    from tests.test_resume import config, run

    checkpoint, workers, epoch, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    real = T.save_checkpoint

    def save_then_wait(path, *args, position=None, **kwargs):
        real(path, *args, position=position, **kwargs)
        if position is not None and (position["epoch"], position["steps"]) == (epoch, step):
            Path(str(path) + ".ready").write_text("")
            time.sleep(600)

    T.save_checkpoint = save_then_wait
    run(config(workers), checkpoint, save_every=4)
    print("finished without being killed")
""")


def kill_after_checkpoint(checkpoint, workers: int, epoch: int, step: int) -> None:
    """Start the child, wait for its checkpoint at (epoch, step), SIGKILL its whole process group."""
    ready = checkpoint.with_name(checkpoint.name + ".ready")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(checkpoint), str(workers), str(epoch), str(step)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"no checkpoint at step {step}: {proc.poll()=}\n{proc.communicate()[0][-3000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its loader workers, no clean-up
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def straight():
    return {w: run(config(w)) for w in (0, 2)}


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(straight, tmp_path, workers):
    checkpoint = tmp_path / "run.pt"
    kill_after_checkpoint(checkpoint, workers, epoch=1, step=2)  # global step 8: epoch 2, 2 of 6 steps
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 1 and state["position"]["steps"] == 2 and state["history"]["epoch"] == [1.0]
    resumed = run(config(workers), checkpoint, resume_from=checkpoint)
    assert_same_weights(straight[workers].model, resumed.model)
    for key in ("train_loss", "val_loss", "val_iou", "lr"):
        assert straight[workers].history[key] == resumed.history[key], key


def test_sigterm_writes_a_checkpoint_after_the_current_step_and_resumes(straight, tmp_path):
    checkpoint = tmp_path / "term.pt"
    cfg = config(0)
    loaders = build_loaders(cfg, "cpu", augment=True)

    class TermAfter3:  # the loader, sending this process SIGTERM while the 3rd step of epoch 1 trains
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __len__(self):
            return len(self.inner)

        def __iter__(self):
            for i, batch in enumerate(self.inner):
                if i == 2 and self.inner.dataset.epoch == 0:
                    os.kill(os.getpid(), signal.SIGTERM)
                yield batch

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match=r"SIGTERM at step 3/6 of epoch 1: checkpoint .* written"):
        train(cfg, loaders=(TermAfter3(loaders.train), loaders.val), device="cpu", model_kwargs=TINY,
              face_fraction=straight[0].face_fraction,  # no measuring pass over the loader before training
              checkpoint_path=checkpoint, threads=1, progress=False, log=None)
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    assert load_checkpoint(checkpoint)["position"]["steps"] == 3
    assert_same_weights(straight[0].model, run(cfg, checkpoint, resume_from=checkpoint).model)


def test_a_checkpoint_of_another_run_is_refused_saying_what_differs(tmp_path):
    checkpoint = tmp_path / "c.pt"
    run(config(0, epochs=1), checkpoint, stop_after=1)
    with pytest.raises(ValueError, match=r"another configuration \(lr: checkpoint 0.01, this run 0.02\); "
                                         r"resume with the same configuration"):
        run(config(0, epochs=1, lr=0.02), checkpoint, resume_from=checkpoint)
    cfg = config(0, epochs=1)
    loaders = build_loaders(cfg, "cpu")
    other = build_loaders(config(0, epochs=1, val_fraction=0.3), "cpu")  # other images to train on
    with pytest.raises(ValueError, match=r"another training set \(names_sha256: .*samples: checkpoint 42, this "
                                         r"run 32\); resume on the same data folder and split"):
        train(cfg, loaders=(other.train, loaders.val), device="cpu", model_kwargs=TINY, resume_from=checkpoint,
              progress=False, log=None)


def test_the_sampler_skips_without_reading_and_keeps_the_order():
    gen = torch.Generator().manual_seed(3)
    sampler = ResumableRandomSampler(range(10), generator=gen)
    whole = list(sampler)
    gen.manual_seed(3)
    sampler.skip_next(4)
    assert list(sampler) == whole[4:] and len(sampler) == 10
    assert list(sampler) != whole  # the skip is for one pass; the generator went on as after a full pass
    gen.manual_seed(3)
    list(sampler)
    after_full = gen.get_state()
    gen.manual_seed(3)
    sampler.skip_next(4)
    list(sampler)
    assert torch.equal(gen.get_state(), after_full)
    with pytest.raises(ValueError, match="int >= 0"):
        sampler.skip_next(-1)
    plain = [[0, 1], [2, 3], [4, 5]]  # no sampler: a fast-forward
    assert list(skip_done(plain, 2)) == [[4, 5]]
