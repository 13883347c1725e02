"""Compare training choices on the VALIDATION split: ``python -m helpers.lab.tune``.

The loss weights (``pos_weight``, the Dice term) and the model width were first picked by their IoU
on the TEST split, before the project had a validation split; this command makes the same comparison
where it belongs. Each candidate is a full training run of the chosen config (quick: about 4 minutes
on an idle 2-core CPU with its 16 epochs), scored on the validation split at its last epoch; the test
split is never read. ``--epochs`` shortens every run (a cheaper, rougher comparison: a choice that
wins after 4 epochs need not win after 16).

Candidates (:data:`CANDIDATES`) change one thing each from the defaults, so each row answers "does
this choice matter, and which way?". Face-level precision/recall are reported beside pixel IoU since
a choice that raises IoU by merging neighbouring faces or spraying small false regions would show
there.

What has been run, with the command and the result of each sweep: :data:`RECORDED_SWEEPS` (notebook 05
prints them).

Notebooks: 05 teaches it.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["CANDIDATES", "RECORDED_SWEEPS", "pos_weight_rule", "sweep", "main"]

#: Sweeps that have been run, as they printed (what a notebook shows and the docstring cites). Each
#: entry says how it was made; rerun the command to check it on another machine.
RECORDED_SWEEPS: dict[str, str] = {
    "loss weights and width": """\
Run on 2026-11-30: quick config, `--epochs 4` instead of 16, one seed, 2 CPU cores shared with
other jobs, validation split of 93 images. Command: `python -m helpers.lab.tune --epochs 4 --only defaults
"pos_weight = full" "pos_weight = 1" "no Dice" "width 4"`

candidate                   val IoU  pixel P  pixel R  face P  face R
defaults (sqrt, Dice 1, w8)  0.703    0.747    0.923   0.594   0.643
pos_weight = full ratio      0.563    0.573    0.967   0.369   0.506
pos_weight = 1               0.696    0.757    0.896   0.640   0.656
no Dice term                 0.659    0.694    0.928   0.571   0.618
width 4                      0.620    0.669    0.893   0.510   0.510

So after 4 epochs the defaults are reasonable: the full-ratio weight, dropping the Dice term and the
narrower network are clearly worse; `pos_weight = 1` is level with the square root on IoU (a 0.007
gap is within one seed's noise) and a little better on face-level figures. Not run: width 16, Dice
weight 2, and any candidate at the full 16 epochs; the defaults were NOT re-chosen on this sweep.""",
    "flip augmentation": """\
Run on 2026-11-30: quick config, the full 16 epochs, one seed, 2 CPU cores (partly shared), validation
split of 93 images. Command: `python -m helpers.lab.tune --only defaults flip`

candidate                               val IoU  pixel P  pixel R  face P  face R
defaults (no augmentation)               0.829    0.888    0.926   0.720   0.734
flip augmentation (p = 0.5)              0.824    0.887    0.920   0.781   0.710

Level on pixel IoU (a 0.005 gap is within one seed's noise); the flip trades some face recall for face
precision. No clear gain, so the default run trains without it.""",
}


#: name -> changes from the defaults (``train()`` keyword arguments; ``pos_weight`` is a rule name
#: for :func:`pos_weight_rule`).
CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults (sqrt ratio, Dice 1, width 8)": {},
    "pos_weight = full ratio": {"pos_weight": "full"},
    "pos_weight = 1": {"pos_weight": "none"},
    "no Dice term": {"dice_weight": 0.0},
    "Dice weight 2": {"dice_weight": 2.0},
    "width 4": {"model_kwargs": {"base_channels": 4}},
    "width 16": {"model_kwargs": {"base_channels": 16}},
    "flip augmentation": {"augment": True},
}


def pos_weight_rule(rule: str, face_fraction: float) -> float:
    """``'sqrt'``: the default :func:`helpers.loss.positive_weight`; ``'full'``: the whole
    background/face ratio; ``'none'``: 1 (no weight)."""
    ratio = (1.0 - face_fraction) / face_fraction
    rules = {"sqrt": math.sqrt(ratio), "full": ratio, "none": 1.0}
    if rule not in rules:
        raise ValueError(f"pos_weight rule {rule!r}: expected one of {sorted(rules)}")
    return rules[rule]


def sweep(config, candidates: dict[str, dict[str, Any]], device: str = "cpu", log=print) -> list[dict[str, Any]]:
    """Train ``config`` once per candidate and score each on the validation split (last epoch).

    The loaders are built once (``build_loaders``: its test loader is built but never iterated) and the
    face-pixel fraction measured once on the training split. Returns one row per candidate.
    """
    from ..data_path import build_loaders
    from ..loss import face_pixel_fraction
    from ..train import train

    loaders = build_loaders(config, device, keep_test_boxes=True)
    face_fraction = face_pixel_fraction(loaders.train)
    rows = []
    for name, changes in candidates.items():
        kwargs = dict(changes)
        kwargs["pos_weight"] = pos_weight_rule(kwargs.pop("pos_weight", "sqrt"), face_fraction)
        train_loader = loaders.train
        if kwargs.pop("augment", False):  # the same split and validation loader, flipped training images
            train_loader = build_loaders(config, device, keep_test_boxes=True, augment=True).train
        t0 = time.perf_counter()
        result = train(config, loaders=(train_loader, loaders.val), device=device, face_fraction=face_fraction,
                       progress=False, log=None, **kwargs)
        ev = result.evaluation
        row = {"candidate": name, "epochs": config.epochs, "seconds": time.perf_counter() - t0,
               "pos_weight": kwargs["pos_weight"], **ev.summary()}
        rows.append(row)
        if log:
            log(_row_text(row))
    return rows


def _row_text(row: dict[str, Any]) -> str:
    return (f"{row['candidate']:<40} val IoU {row['iou']:.3f}  P {row['precision']:.3f}  R {row['recall']:.3f}  "
            f"faces P {row['face_precision']:.3f} R {row['face_recall']:.3f}  ({row['seconds']:.0f}s)")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m helpers.lab.tune [--config quick] [--epochs N] [--only NAME ...] [--json F]``."""
    from ..project import write_json
    from ..runconfig import pick_config
    from ..setup_env import pick_device
    from ..synth import ensure_dataset

    p = argparse.ArgumentParser(prog="python -m helpers.lab.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=["quick", "full"], default="quick", help="run size (default quick)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per candidate (default: the config's)")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME",
                   help=f"candidates to run, by name prefix (default all): {list(CANDIDATES)}")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    device = pick_device()
    overrides = {"epochs": args.epochs} if args.epochs else {}
    config = pick_config(args.config, device=device, **overrides)
    chosen = {k: v for k, v in CANDIDATES.items() if args.only is None or any(k.startswith(o) for o in args.only)}
    if not chosen:
        p.error(f"--only {args.only}: no candidate starts with that; choose from {list(CANDIDATES)}")
    if config.data_folder is None:
        ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=False)
    print(f"{config.name}, {config.epochs} epochs per candidate, scored on the validation split")
    rows = sweep(config, chosen, device)
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
