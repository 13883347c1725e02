"""The benchmark's report (``python -m helpers.lab.bench report --json FILE``): one result of
:func:`helpers.lab.bench.run_all` as the markdown tables of docs/benchmarks.md, and the check that a
result is complete.

:func:`render_report` (decode paths, the pipeline against the limit, memory as the data set grows,
the index alone; a warning when the cores were contended); :func:`missing_fields`: the fields of
:data:`REQUIRED_FIELDS` a result lacks.

Notebooks: 06 uses it (through :mod:`helpers.lab.bench`).
"""
from __future__ import annotations

from typing import Any, Sequence

from .bench_memory import GROWTH_TARGET, TRAINING_STORAGE, MiB, format_index_memory


#: The fields a complete result has (tests/test_bench.py checks them).
REQUIRED_FIELDS = {
    "machine": ("cores", "cpu_model", "torch", "torchvision", "pillow"),
    "limit": ("size", "decode_path", "images_per_s"),
    "pipeline": ("num_workers", "loader_batch", "images_per_s", "cpu_ms_per_image", "ratio_to_limit"),
    "decode_paths": ("name", "images_per_s", "ratio_to_pillow", "mean_abs_diff"),
    "memory": ("entries", "storage", "total_pss_mb", "ratio_to_1k"),
}



def missing_fields(result: dict[str, Any]) -> list[str]:
    """Fields of :data:`REQUIRED_FIELDS` (and ``contended``) that ``result`` lacks."""
    missing = [] if "contended" in result else ["contended"]
    for key, fields in REQUIRED_FIELDS.items():
        value = result.get(key)
        if value is None or (isinstance(value, list) and not value):
            missing.append(key)
            continue
        for item in value if isinstance(value, list) else [value]:
            missing += [f"{key}.{f}" for f in fields if f not in item]
    return sorted(set(missing))


# --- the markdown report -------------------------------------------------------------------------


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)



def _cpu_ratio_lines(pipeline: list[dict[str, Any]]) -> list[str]:
    """CPU per image of the default loader (draft decoding, 2 workers, the largest loader batch) against
    the previous one (full decode, 2 workers, batches of 8), per size: the issue's "<= 0.35x" figure."""
    lines = []
    for size in sorted({tuple(r["size"]) for r in pipeline}):
        rows = [r for r in pipeline if tuple(r["size"]) == size and r["num_workers"] == 2]
        old = [r for r in rows if r["decode_path"] == "pillow" and r["loader_batch"] == 8]
        new = [r for r in rows if r["decode_path"] == "pillow-draft"]
        if old and new and old[0]["cpu_ms_per_image"]:
            best = max(new, key=lambda r: r["loader_batch"])
            lines.append(f"CPU per image at {'x'.join(map(str, size))}, draft decoding with loader batches of "
                         f"{best['loader_batch']} vs full decode with batches of 8 (2 workers each): "
                         f"{best['cpu_ms_per_image'] / old[0]['cpu_ms_per_image']:.2f}x")
    return lines + [""] if lines else []



def _md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table's lines: ``columns`` are header names, a trailing ``:`` right-aligns one
    (``"images/s:"``); each row is its cells, already formatted."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(map(str, cells)) + " |"

    rule = "|" + "|".join("---:" if c.endswith(":") else "---" for c in columns) + "|"
    return [line([c.rstrip(":") for c in columns]), rule] + [line(row) for row in rows]



def render_report(result: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md (markdown) from one :func:`run_all` result."""
    m = result["machine"]
    out = [f"Command: `{result['command']}` ({result.get('date_utc', '?')} UTC, {result.get('seconds', '?')} s)", "",
           f"Machine: {m['cores']} usable cores ({m['cpu_model']}), {m.get('memory_gib', '?')} GiB; "
           f"Python {m.get('python')}, torch {m['torch']}, torchvision {m['torchvision']}, Pillow {m['pillow']} "
           f"(libjpeg-turbo {m.get('libjpeg_turbo')}); {result.get('n_images')} images of {result.get('data_dir')}.", ""]
    slow = ", ".join(f"{p['slowdown']:.2f}x" for p in result.get("contention", []))
    if result.get("contended"):
        out += [f"**WARNING: contended** — a CPU-bound probe ran {slow} slower in {m['cores']} processes than in 1 "
                "(another load on the machine): these figures are not those of an idle machine.", ""]
    else:
        out += [f"Cores checked free: a CPU-bound probe in {m['cores']} processes vs 1: {slow}.", ""]
    if result.get("decode_paths"):
        rows = []
        for r in result["decode_paths"]:
            size = "x".join(map(str, r["size"]))
            if not r.get("available", True):
                rows.append([size, r["name"], "–", "–", "–", "–", f"unavailable: {r['reason']}"])
            else:
                rows.append([size, r["name"], _fmt(r["images_per_s"]), f"{_fmt(r['ratio_to_pillow'], '.2f')}x",
                             _fmt(r["mean_abs_diff"], ".2f"), r["max_abs_diff"], r["note"]])
        out += ["### Decode paths (decode + resize to the training size, 1 thread, warm)", ""]
        out += _md_table(["size", "path", "images/s:", "vs pillow:", "mean abs diff:", "max abs diff:", "note"], rows)
        masks = result.get("masks_identical") or {}
        out += ["", "Masks with draft decoding identical to the full decode's: "
                + ", ".join(f"{k}: {v}" for k, v in masks.items()), ""]
    if result.get("pipeline"):
        out += ["### The pipeline against the limit", ""]
        out += _md_table(
            ["size", "decode", "workers:", "loader batch:", "images/s:", "CPU ms/image:", "limit:", "/ limit:",
             "/ parallel limit:"],
            [["x".join(map(str, r["size"])), r["decode_path"], r["num_workers"], r["loader_batch"],
              _fmt(r["images_per_s"]), _fmt(r["cpu_ms_per_image"], ".2f"), _fmt(r["limit_images_per_s"]),
              _fmt(r["ratio_to_limit"], ".2f"), _fmt(r.get("ratio_to_parallel_limit"), ".2f")]
             for r in result["pipeline"]])
        out += ["", "limit = min(max(workers, 1), cores) x the warm single-thread decode + resize rate of the same "
                "decode path, timed in the same rounds: "
                + "; ".join(f"{'x'.join(map(str, r['size']))} {r['decode_path']} {_fmt(r['images_per_s'])}/s"
                            for r in result.get("limit", [])), ""]
        parallel = [r for r in result.get("limit", []) if r.get("parallel_images_per_s")]
        if parallel:
            n = parallel[0]["parallel_processes"]
            out += [f"parallel limit = {n} processes doing the limit's work at the same time, in the same rounds "
                    f"(their rate, and its ratio to {n} x the single-thread limit): "
                    + "; ".join(f"{'x'.join(map(str, r['size']))} {r['decode_path']} {_fmt(r['parallel_images_per_s'])}/s "
                                f"({_fmt(r['parallel_scaling'], '.2f')})" for r in parallel), ""]
        out += _cpu_ratio_lines(result["pipeline"])
    if result.get("memory"):
        out += ["### Memory as the data set grows (FaceDataset + transforms + DataLoader, 2 workers)", ""]
        out += _md_table(
            ["start method", "entries:", "storage", "batches:", "full pass", "single PSS MiB:", "main+workers PSS MiB:",
             "peak MiB:", "vs smallest:", "heap only (anon PSS) MiB:", "JPEG MiB read:", "read / peak:"],
            [[r.get("start_method") or "fork", f"{r['entries']:,}", r["storage"], r["batches"],
              "yes" if r["full_pass"] else "no", r["single_pss_mb"],
              r["total_pss_mb"], r["peak_total_pss_mb"], f"{r['ratio_to_1k']:.3f}",
              f"{_fmt(r.get('single_anon_pss_mb'))} -> {_fmt(r.get('total_anon_pss_mb'))}",
              f"{r['jpeg_bytes_read'] / MiB:.1f}", f"{r['bytes_read_over_peak_pss']:.2f}"]
             for r in result["memory"]])
        storages = {r["storage"] for r in result["memory"]}
        target = TRAINING_STORAGE if TRAINING_STORAGE in storages else "array"
        largest = max(r["entries"] for r in result["memory"])
        out.append("")
        for a in (r for r in result["memory"] if r["storage"] == target and r["entries"] == largest):
            verdict = "PASS" if a["ratio_to_1k"] <= GROWTH_TARGET else "FAIL"
            out.append(f"Target: {target}, {a.get('start_method') or 'fork'}, {a['entries']:,} entries vs the smallest "
                       f"index: {a['ratio_to_1k']:.3f} <= {GROWTH_TARGET:.2f} {verdict}")
        a = next(r for r in result["memory"] if r["storage"] == target)
        out += ["", f"Decoded at {'x'.join(map(str, a['size']))}{' (draft)' if a.get('decode_size') else ' (full decode)'}; "
                f"the {target} loader built by {a.get('built_by', '?')}, the others by the same construction with "
                f"their storage; the training split ({a.get('train_entries', '?'):,} of {a['entries']:,} entries) is "
                "read.", ""]
    if result.get("index_memory"):
        out += ["### The index alone, under each start method (2 workers)", "", "```",
                format_index_memory(result["index_memory"]), "```", ""]
    return "\n".join(out)
