"""The training-time part of the benchmark (``python -m helpers.lab.bench training``): ``train()``'s
epoch loop with ``build_loaders``' default loader against the reference one (full decode, batches of 8).

:func:`run_training_time`: the same data, split, seed and model, each loader with each torch thread
count, alternated in one process; medians and the ratio to the reference loader;
:func:`format_training_time` prints them.

Notebooks: 06 quotes its command; docs/benchmarks.md quotes its output.
"""
from __future__ import annotations

from typing import Any, Sequence

from .bench_machine import machine_info


# --- training time: the new loader against the reference one, in the training loop itself --------


def run_training_time(config_name: str = "quick", epochs: int = 2, rounds: int = 2,
                      threads: Sequence[int | None] = (None,), log=print) -> dict[str, Any]:
    """Seconds of ``train()``'s epoch loop (training steps + waiting for batches; validation excluded)
    with the reference loader (full decode + ``Rescale``, ``default_collate``'s batches of ``batch_size``)
    and with ``build_loaders``' default (reduced decode, channels_last batches, loader batches of 64
    split by ``SplitBatches``), each
    with every torch thread count in ``threads`` (``None``: ``train``'s default,
    ``threads_beside_workers``), alternated ``rounds`` times in one process (the order rotated and
    reversed from round to round), ``epochs`` epochs each; medians per variant, and each variant's
    ratio to the reference loader at the default thread count. Same data, split, seed and model."""
    import statistics

    from ..data_path import build_loaders
    from ..loss import face_pixel_fraction
    from ..runconfig import pick_config
    from ..synth import ensure_dataset
    from ..train import threads_beside_workers, train

    config = pick_config(config_name, epochs=epochs)
    if config.data_folder is None:
        ensure_dataset(config.data_dir, config.n_images, seed=config.data_seed, progress=False)
    loader_kinds = {
        "reference (full decode, batches of 8)": {"reduced_decode": False, "channels_last": False,
                                                  "loader_batch_size": None},
        "default (reduced decode, 64 split to 8)": {},
    }
    loaders = {name: build_loaders(config, "cpu", **kw) for name, kw in loader_kinds.items()}
    rule = threads_beside_workers(config.num_workers)
    counts = list(dict.fromkeys(rule if t is None else int(t) for t in threads))
    variants = [(kind, t) for t in counts for kind in loader_kinds]
    face_fraction = face_pixel_fraction(loaders[next(iter(loader_kinds))].train)
    seconds: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for kind, t in (order if r % 2 == 0 else order[::-1]):  # no variant always first or last
            result = train(config, loaders=loaders[kind], device="cpu", face_fraction=face_fraction,
                           threads=t, progress=False, log=None)
            seconds[(kind, t)].append(sum(result.history["seconds"]))
            if log:
                log(f"  round {r + 1}: {kind}, {t} thread(s): {seconds[(kind, t)][-1]:.1f} s")
    reference = statistics.median(seconds[(next(iter(loader_kinds)), rule)])
    rows = [{"loader": kind, "threads": t, "default_threads": t == rule, "seconds": seconds[(kind, t)],
             "median_seconds": statistics.median(seconds[(kind, t)]),
             "ratio_to_reference": statistics.median(seconds[(kind, t)]) / reference} for kind, t in variants]
    new = next(row for row in rows if row["default_threads"] and row["loader"].startswith("default"))
    thread_args = " ".join("default" if t is None else str(t) for t in threads)
    return {"command": f"python -m helpers.lab.bench training --config {config_name} --epochs {epochs} "
                       f"--rounds {rounds}" + (f" --threads {thread_args}" if list(threads) != [None] else ""),
            "config": config.name, "epochs": epochs, "rounds": rounds, "machine": machine_info(),
            "num_workers": config.num_workers, "default_threads": rule, "rows": rows,
            "ratio_new_to_reference": new["ratio_to_reference"]}



def format_training_time(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"Command: `{result['command']}`; {m['cores']} cores ({m['cpu_model']}), torch {m['torch']}",
             f"train() epoch loop, {result['config']} config, {result['num_workers']} loader workers, "
             f"{result['epochs']} epochs, median of {result['rounds']} alternated rounds "
             f"(train's default: {result['default_threads']} torch thread(s)):",
             f"  {'loader':<42} {'threads':>7} {'seconds':>8} {'vs reference':>13}"]
    for row in result["rows"]:
        mark = " (default)" if row["default_threads"] else ""
        lines.append(f"  {row['loader']:<42} {row['threads']:>7} {row['median_seconds']:8.1f} "
                     f"{row['ratio_to_reference']:12.2f}x{mark}")
    lines.append(f"  new / reference, default threads: {result['ratio_new_to_reference']:.2f}")
    return "\n".join(lines)
