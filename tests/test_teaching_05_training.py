"""Notebook 05's teaching version, the article's twenty-line training loop (``build_model``,
``BCEWithLogitsLoss``, AdamW; for every batch forward, loss, backward, step), beside
``helpers.train.train_step`` on data_sample/: from the same seed, on the same batches, with the same
optimiser, the two give the same loss at every step and the same weights after
(``FaceLoss``'s default is the plain cross-entropy): on the contiguous batches of
``build_loaders(channels_last=False)``, and on the ``channels_last`` batches the notebook trains on,
with ``train_step`` running the model in that layout as ``train`` does. On one thread they agree bit for
bit; the tolerances are for the order of float sums only.

The teaching cell needs three names from the notebook's cells before it: ``config`` (a RunConfig: its
seed and learning rate), ``device`` and ``train_loader`` (``helpers.data_path.build_loaders``' training
loader).
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers.data_path import build_loaders
from helpers.loss import FaceLoss
from helpers.model import build_model
from helpers.runconfig import CONFIGS, SAMPLE_FOLDER
from helpers.train import torch_threads, train_step
from teaching import run_teaching_cells

NOTEBOOK = "05_training"
#: The quick configuration, on data_sample/ at a smaller size, without workers (the same batches).
CONFIG = replace(CONFIGS["quick"], image_size=(96, 128), num_workers=0)


def sample_loader(channels_last: bool):
    """A fresh training loader over data_sample/: its first epoch is the order the teaching loop saw."""
    return build_loaders(CONFIG, "cpu", data_dir=SAMPLE_FOLDER, channels_last=channels_last).train


def teaching_run(channels_last: bool) -> dict:
    with torch_threads(1):  # one thread, one summation order, in both runs
        return run_teaching_cells(NOTEBOOK, {"config": CONFIG, "device": "cpu",
                                             "train_loader": sample_loader(channels_last)})


def helper_run(channels_last: bool) -> tuple[list[float], torch.nn.Module]:
    """``train_step`` from the teaching cell's seed, with its optimiser and train()'s default loss."""
    torch.manual_seed(CONFIG.seed)
    model = build_model()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # as train() runs it
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONFIG.lr, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with torch_threads(1):
        losses = [train_step(model, batch, FaceLoss(), optimizer, None, scaler, torch.device("cpu"), channels_last)
                  for batch in sample_loader(channels_last)]
    return losses, model


@pytest.fixture(scope="module")
def taught():
    return teaching_run(channels_last=False)


def test_the_teaching_loop_runs_a_few_batches_and_its_loss_falls(taught):
    losses = taught["losses"]
    assert len(losses) == len(sample_loader(False)) == 6  # the sample's 42 training images, batches of 8
    assert losses[-1] < losses[0]
    assert "step  0: loss" in taught["_printed"] and "step  5: loss" not in taught["_printed"]
    assert isinstance(taught["loss_fn"], torch.nn.BCEWithLogitsLoss) and taught["loss_fn"].pos_weight is None
    assert FaceLoss().dice_weight == 0 and float(FaceLoss().pos_weight) == 1  # train()'s default: that loss


def test_same_losses_and_weights_as_train_step(taught):
    losses, model = helper_run(channels_last=False)
    assert losses == pytest.approx(taught["losses"], rel=1e-6)
    taught_weights = taught["model"].state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(taught_weights[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_on_the_notebooks_channels_last_batches_too():
    taught = teaching_run(channels_last=True)
    losses, model = helper_run(channels_last=True)
    assert losses == pytest.approx(taught["losses"], rel=1e-6)
    taught_weights = taught["model"].state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(taught_weights[name], value, rtol=1e-5, atol=1e-6, msg=name)
