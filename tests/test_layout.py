"""The pipeline apart from the code that checks or measures it: no module a training run imports loads
``helpers.lab``, so a reader can read the pipeline on its own."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ["project", "setup_env", "runconfig", "errors", "synth", "datafiles", "convert", "storage", "dataset",
            "transforms", "loader", "collate", "data_path", "model", "on_device", "loss", "metrics", "evaluation",
            "checkpoints", "inference", "baseline", "train", "shards", "distributed", "real_photo", "plotting",
            "notebook", "sample", "resume"]


def test_every_helper_module_is_listed_as_pipeline_or_lab():
    modules = {p.stem for p in (ROOT / "helpers").glob("*.py") if p.stem != "__init__"}
    assert modules == set(PIPELINE), f"classify the new module(s): {sorted(modules ^ set(PIPELINE))}"


def test_the_training_path_never_imports_the_lab():
    code = ("import sys\n"
            + "".join(f"import helpers.{m}\n" for m in PIPELINE)
            + "from helpers.train import main  # the training command's own imports\n"
            + "lab = sorted(m for m in sys.modules if m.startswith('helpers.lab'))\n"
            + "assert not lab, lab\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_training_run_does_not_load_the_lab(tmp_path):
    """Lazy imports inside functions count too: run a one-epoch training on a tiny folder and look."""
    code = f"""
import sys
from dataclasses import replace
from helpers import synth
from helpers.runconfig import CONFIGS
from helpers.data_path import build_loaders
from helpers.evaluation import final_test
from helpers.train import train
synth.generate({str(tmp_path)!r}, 24, seed=0, size=(48, 64), workers=1, progress=False)
config = replace(CONFIGS["quick"], data_folder={str(tmp_path)!r}, image_size=(24, 32), epochs=1, num_workers=0,
                 test_fraction=0.3, val_fraction=0.3)
loaders = build_loaders(config, "cpu", keep_test_boxes=True)
result = train(config, loaders=loaders, device="cpu", progress=False, log=None)
final_test({{"CNN": result.model}}, loaders.test)
lab = sorted(m for m in sys.modules if m.startswith("helpers.lab"))
assert not lab, lab
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
