"""Choose the training defaults on the VALIDATION split: ``python -m helpers.lab.tune``.

Each candidate (:data:`CANDIDATES`) changes one thing from the defaults, so each row answers "does this
choice matter, and which way?". Every candidate is trained with several seeds (``--seeds``: the model's
initialisation and the shuffling differ, the data do not), each a full training run of the chosen
config, and scored on the validation split at its last epoch; the test split is never read. Face-level
precision/recall are reported beside pixel IoU, since a choice that raised IoU by merging neighbouring
faces or spraying small false regions would show there.

How a choice is made (:func:`verdicts`): a candidate beats the defaults only when its lowest IoU over the
seeds is above the defaults' highest (and loses when its highest is below their lowest); a winner is
adopted unless what it costs rules it out (appendix 05a weighs width 16's compute). When the two
ranges overlap, the gap is inside the spread across seeds and is not a choice: the simpler of the two is
kept (:data:`SIMPLER`: no Dice term is simpler than one, a narrower network than a wider one, no
augmentation than some, no weight than a weight).

The record: ``--record docs/tune_validation.json`` writes the run as JSON (date, machine, versions,
config, seeds, the command line, every candidate's figures per seed), after each finished run, so an
interrupted sweep leaves what it had; appendix 05a renders it with :func:`render`, and a test checks that
its candidates and defaults are today's (:func:`stale_reasons`). ``--jobs 2`` runs two trainings at a
time (on a CPU, one training keeps about one core busy, its loader workers a fraction of the other).

Notebooks: 05 (appendix 05a) renders the records; 05 checks the last one is current.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from ..project import ROOT, relative

__all__ = ["CANDIDATES", "SIMPLER", "RECORD", "RECORD_ROUND1", "RECORD_ROUND2", "ROUNDS", "current_defaults", "pos_weight_rule", "sweep", "load_record",
           "summarize", "verdicts", "render", "stale_reasons", "main"]

#: name -> changes from the defaults (``train()`` keyword arguments; ``pos_weight`` is a rule name for
#: :func:`pos_weight_rule`, ``augment`` goes to ``build_loaders``). The first entry is the defaults.
CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults (no pos_weight, no Dice, width 8)": {},
    "pos_weight = sqrt ratio": {"pos_weight": "sqrt"},
    "pos_weight = full ratio": {"pos_weight": "full"},
    "Dice weight 1": {"dice_weight": 1.0},
    "width 4": {"model_kwargs": {"base_channels": 4}},
    "width 16": {"model_kwargs": {"base_channels": 16}},
    "flip augmentation": {"augment": True},
}
DEFAULTS_NAME = next(iter(CANDIDATES))

#: The candidates that are simpler than the defaults: kept when level with them.
SIMPLER: frozenset[str] = frozenset({"width 4"})

#: The committed record of the sweep around today's defaults (what appendix 05a renders, and notebook 05 cites).
RECORD = ROOT / "docs" / "tune_validation.json"
#: The first round, around the defaults before it (the square-root ``pos_weight``): why that default changed.
RECORD_ROUND1 = ROOT / "docs" / "tune_validation_round1.json"
#: The second round, around no ``pos_weight`` with the Dice term: no Dice term was level, and simpler.
RECORD_ROUND2 = ROOT / "docs" / "tune_validation_round2.json"
#: Every round, in the order they were run (the last is :data:`RECORD`).
ROUNDS = (RECORD_ROUND1, RECORD_ROUND2, RECORD)

#: The figures each run reports (``Evaluation.summary()`` keys), in the order tables show them.
FIGURES = ("iou", "dice", "precision", "recall", "face_precision", "face_recall")


def current_defaults() -> dict[str, Any]:
    """The defaults as today's code has them: the rule ``helpers.loss.POS_WEIGHT`` follows, the Dice
    weight of ``train()``, the width of ``MODEL_DEFAULTS`` and ``build_loaders``' ``augment``."""
    from ..data_path import build_loaders
    from ..loss import POS_WEIGHT
    from ..model import MODEL_DEFAULTS
    from ..train import train

    rule = next(r for r in ("none", "sqrt", "full") if math.isclose(POS_WEIGHT, pos_weight_rule(r, 0.1)))
    return {"pos_weight": rule,
            "dice_weight": inspect.signature(train).parameters["dice_weight"].default,
            "base_channels": MODEL_DEFAULTS["base_channels"],
            "augment": inspect.signature(build_loaders).parameters["augment"].default}


def pos_weight_rule(rule: str, face_fraction: float) -> float:
    """``'sqrt'``: the square root of the background/face ratio; ``'full'``: the whole ratio;
    ``'none'``: 1 (no weight)."""
    ratio = (1.0 - face_fraction) / face_fraction
    rules = {"sqrt": math.sqrt(ratio), "full": ratio, "none": 1.0}
    if rule not in rules:
        raise ValueError(f"pos_weight rule {rule!r}: expected one of {sorted(rules)}")
    return rules[rule]


def sweep(config, candidates: dict[str, dict[str, Any]], device: str = "cpu", seeds: Sequence[int] | None = None,
          log: Callable[[str], None] | None = print, on_row: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Train ``config`` once per candidate and seed (default: ``config.seed`` alone) and score each run
    on the validation split (last epoch). Returns one row per run, in order; ``on_row`` sees each.

    The loaders are built once (``build_loaders``: its test loader is built but never iterated) and the
    face-pixel fraction measured once on the training split; ``train`` reseeds the shuffling per epoch
    from ``config.seed``, so each seed has its own order and initialisation.
    """
    from dataclasses import replace

    from ..data_path import build_loaders
    from ..loss import face_pixel_fraction
    from ..train import train

    loaders = build_loaders(config, device, keep_test_boxes=True)
    default_rule = current_defaults()["pos_weight"]
    flipped = None
    face_fraction = face_pixel_fraction(loaders.train)
    rows = []
    for name, changes in candidates.items():
        for seed in (config.seed,) if seeds is None else seeds:
            kwargs = dict(changes)
            rule = kwargs.pop("pos_weight", default_rule)
            kwargs["pos_weight"] = pos_weight_rule(rule, face_fraction)
            train_loader = loaders.train
            if kwargs.pop("augment", False):  # the same split and validation loader, flipped training images
                if flipped is None:
                    flipped = build_loaders(config, device, keep_test_boxes=True, augment=True).train
                train_loader = flipped
            t0 = time.perf_counter()
            result = train(replace(config, seed=seed), loaders=(train_loader, loaders.val), device=device,
                           face_fraction=face_fraction, progress=False, log=None, **kwargs)
            row = {"candidate": name, "seed": seed, "epochs": config.epochs,
                   "seconds": round(time.perf_counter() - t0, 1), "pos_weight": kwargs["pos_weight"],
                   **{k: v for k, v in result.evaluation.summary().items()}}
            rows.append(row)
            if on_row:
                on_row(row)
            if log:
                log(_row_text(row))
    return rows


def _row_text(row: dict[str, Any]) -> str:
    return (f"{row['candidate']:<40} seed {row['seed']}  val IoU {row['iou']:.3f}  P {row['precision']:.3f}  "
            f"R {row['recall']:.3f}  faces P {row['face_precision']:.3f} R {row['face_recall']:.3f}  "
            f"({row['seconds']:.0f}s)")


# --- the record ---------------------------------------------------------------------------------------


def load_record(path: str | Path = RECORD) -> dict[str, Any]:
    """The sweep record written by ``--record``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(record: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """candidate -> figure -> mean, sample standard deviation, min, max and number of seeds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in record["candidates"]:
        runs = [r for r in record["runs"] if r["candidate"] == name]
        if runs:
            out[name] = {k: _spread([r[k] for r in runs]) for k in FIGURES}
    return out


def verdicts(record: dict[str, Any]) -> dict[str, str]:
    """candidate -> ``'better ...'``, ``'worse ...'`` or ``'level ...'`` than the defaults on validation
    pixel IoU, by the ranges over seeds (see the module docstring), and what is kept when that follows
    from the rule alone (a better candidate is adopted unless its cost rules it out: appendix 05a says)."""
    summary = summarize(record)
    base_name = next(iter(record["candidates"]))  # the record's first candidate: its defaults, no change
    if record["candidates"][base_name] or base_name not in summary:  # a sweep without the defaults
        return {}
    base = summary[base_name]["iou"]
    out = {}
    for name, figures in summary.items():
        if name == base_name:
            continue
        iou = figures["iou"]
        if iou["min"] > base["max"]:
            out[name] = "better with every seed"
        elif iou["max"] < base["min"]:
            out[name] = "worse with every seed -> keep the defaults"
        elif name in record.get("simpler", []):
            out[name] = "level -> keep it, the simpler"
        else:
            out[name] = "level -> keep the defaults, the simpler"
    return out


def render(record: dict[str, Any], only: Sequence[str] | None = None) -> str:
    """The record as a text table: per candidate, mean ± standard deviation over the seeds (and the IoU
    range), then the verdict of each against the defaults. ``only``: those candidates, by name prefix."""
    summary = summarize(record)
    names = [n for n in summary if only is None or any(n.startswith(o) for o in only)]
    seeds = record["seeds"]
    lines = [f"{record['config']['name']} config, {record['epochs']} epochs, seeds {seeds}, scored on the validation "
             f"split ({record['n_val_images']} images); run {record['date'][:10]} on {record['machine']['cores']} "
             f"CPU cores ({record['machine']['cpu_model']}), torch {record['machine']['torch']}",
             f"command: {record['command']}",
             "",
             f"{'candidate':<40} {'val IoU (mean ± sd)':>20} {'IoU range':>13} {'face P':>13} {'face R':>13}"]
    for name in names:
        f = summary[name]
        n = f["iou"]["n"]
        lines.append(f"{name:<40} {f['iou']['mean']:>12.3f} ± {f['iou']['sd']:.3f} "
                     f"{f['iou']['min']:>6.3f}-{f['iou']['max']:.3f} "
                     f"{f['face_precision']['mean']:>6.3f} ± {f['face_precision']['sd']:.3f} "
                     f"{f['face_recall']['mean']:>6.3f} ± {f['face_recall']['sd']:.3f}"
                     + ("" if n == len(seeds) else f"  ({n} of {len(seeds)} seeds)"))
    verdict = verdicts(record)
    shown = [n for n in names if n in verdict]
    if shown:
        lines += ["", "against the defaults (IoU ranges over the seeds):"]
        lines += [f"  {n:<38} {verdict[n]}" for n in shown]
    if not record.get("complete", False):
        lines += ["", "INCOMPLETE: the sweep was interrupted; rerun the command above."]
    return "\n".join(lines)


def stale_reasons(record: dict[str, Any], quick_epochs: int | None = None) -> list[str]:
    """Why ``record`` no longer describes today's code (empty when it does): other candidates, other
    defaults, fewer than 3 seeds a candidate, other epochs than the quick config's, unfinished."""
    from ..runconfig import CONFIGS

    reasons = []
    if record["candidates"] != CANDIDATES:
        reasons.append(f"candidates {sorted(record['candidates'])} are not today's CANDIDATES {sorted(CANDIDATES)}")
    if record["defaults"] != current_defaults():
        reasons.append(f"defaults {record['defaults']} are not today's {current_defaults()}")
    if sorted(record.get("simpler", [])) != sorted(SIMPLER):
        reasons.append(f"simpler {record.get('simpler')} is not today's SIMPLER {sorted(SIMPLER)}")
    epochs = CONFIGS["quick"].epochs if quick_epochs is None else quick_epochs
    if record["epochs"] != epochs:
        reasons.append(f"{record['epochs']} epochs, not the quick config's {epochs}")
    for name, figures in summarize(record).items():
        if figures["iou"]["n"] < 3:
            reasons.append(f"{name}: {figures['iou']['n']} seeds, fewer than 3")
    missing = [n for n in record["candidates"] if n not in summarize(record)]
    if missing:
        reasons.append(f"no runs for {missing}")
    if not record.get("complete", False):
        reasons.append("the sweep did not finish")
    return reasons


# --- the command ------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    from .bench import machine_info

    return machine_info()


def _one_run_in_child(config, name: str, changes: dict[str, Any], seed: int) -> dict[str, Any]:
    """One (candidate, seed) run of ``config`` in a child process (``--jobs``): its own loaders and
    workers, the parent's config and the candidate's changes exactly (handed over as JSON)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "helpers.lab.tune", "--one", name, str(seed),
               json.dumps(config.as_dict()), json.dumps(changes), "--json", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "FACES_PROGRESS": "0"})
        return json.loads(out.read_text())[0]


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m helpers.lab.tune [--config quick] [--epochs N] [--seeds S ...] [--only NAME ...]
    [--jobs J] [--record F] [--json F]``."""
    from ..project import write_json
    from ..runconfig import pick_config
    from ..setup_env import pick_device
    from ..synth import ensure_dataset

    p = argparse.ArgumentParser(prog="python -m helpers.lab.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=["quick", "full"], default="quick", help="run size (default quick)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the config's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per candidate (default: 0)")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME",
                   help=f"candidates to run, by name prefix (default all): {list(CANDIDATES)}")
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time, each in its own process (default 1)")
    p.add_argument("--record", type=Path, default=None,
                   help=f"write the sweep record (JSON) here, after every run; e.g. {relative(RECORD)}")
    p.add_argument("--json", type=Path, default=None, help="also write the rows alone to this JSON file")
    p.add_argument("--one", nargs="+", default=None, help=argparse.SUPPRESS)  # NAME SEED [CONFIG CHANGES]
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: need at least 1")
    device = pick_device()
    overrides = {"epochs": args.epochs} if args.epochs else {}
    if args.one:  # a child of --jobs: one run of the parent's config
        from ..checkpoints import config_from_dict

        name, seed = args.one[0], int(args.one[1])
        if len(args.one) == 4:
            config, changes = config_from_dict(json.loads(args.one[2])), json.loads(args.one[3])
        else:
            config, changes = pick_config(args.config, device=device, **overrides), CANDIDATES[name]
        write_json(args.json, sweep(config, {name: changes}, device, seeds=[seed], log=None))
        return 0
    config = pick_config(args.config, device=device, **overrides)
    chosen = {k: v for k, v in CANDIDATES.items() if args.only is None or any(k.startswith(o) for o in args.only)}
    if not chosen:
        p.error(f"--only {args.only}: no candidate starts with that; choose from {list(CANDIDATES)}")
    if config.data_folder is None:
        ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=False)
    from ..data_path import build_loaders

    n_val = len(build_loaders(config, device, keep_test_boxes=True).val.dataset)
    record = {"what": "helpers.lab.tune: training choices on the validation split",
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": shlex.join(["python", "-m", "helpers.lab.tune", *(sys.argv[1:] if argv is None else argv)]),
              "machine": _machine(), "platform": platform.platform(terse=True),
              "config": config.as_dict(), "epochs": config.epochs, "split": "validation", "n_val_images": n_val,
              "seeds": list(args.seeds), "defaults": current_defaults(), "candidates": chosen,
              "simpler": sorted(SIMPLER & set(chosen)), "runs": [], "complete": False}
    print(f"{config.name}, {config.epochs} epochs per run, seeds {args.seeds}, {len(chosen)} candidates, "
          f"{args.jobs} at a time, scored on the validation split ({n_val} images)", flush=True)
    order = {(n, s): i for i, (n, s) in enumerate((n, s) for n in chosen for s in args.seeds)}

    def keep(row: dict[str, Any]) -> None:
        record["runs"].append(row)
        record["runs"].sort(key=lambda r: order[(r["candidate"], r["seed"])])
        print(_row_text(row), flush=True)
        if args.record:
            write_json(args.record, record)

    t0 = time.perf_counter()
    if args.jobs == 1:
        sweep(config, chosen, device, seeds=args.seeds, log=None, on_row=keep)
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            # the slowest runs first (the widest network), so the last minutes are not one run alone
            jobs = sorted(order, key=lambda ns: -chosen[ns[0]].get("model_kwargs", {}).get("base_channels", 8))
            futures = [pool.submit(_one_run_in_child, config, n, chosen[n], s) for n, s in jobs]
            for f in as_completed(futures):
                keep(f.result())
    record["complete"] = True
    record["wall_seconds"] = round(time.perf_counter() - t0)
    if args.record:
        write_json(args.record, record)
        print(render(record))
    if args.json:
        write_json(args.json, record["runs"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
