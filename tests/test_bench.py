"""helpers.lab.bench: the benchmark runs end to end on a tiny data set and writes every JSON field.

Figures depend on the machine and its load, so only structure and sane bounds are checked here; the
figures of docs/benchmarks.md come from `make bench` on an idle machine.
"""
from __future__ import annotations

import json
import statistics
import sys

import pytest

from helpers.lab import bench


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    path = out / "bench.json"
    code = bench.main(["all", "--tiny", "--quiet", "--json", str(path), "--work-dir", str(out / "work")])
    assert code == 0
    return json.loads(path.read_text()), path


@pytest.mark.slow
def test_tiny_run_writes_every_field(tiny):
    result, _ = tiny
    assert bench.missing_fields(result) == []
    m = result["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and m["torch"] and m["torchvision"] and m["pillow"]
    assert isinstance(result["contended"], bool) and len(result["contention"]) >= 2
    assert result["config"]["rounds"] >= 3 and result["torch_threads"] == 1
    sizes = {tuple(s) for s in bench.TRAINING_SIZES}
    assert {tuple(r["size"]) for r in result["limit"]} == sizes
    assert {tuple(r["size"]) for r in result["pipeline"]} == sizes


@pytest.mark.slow
def test_tiny_run_pipeline_ratios_use_the_same_decode_path_and_cores(tiny):
    result, _ = tiny
    limits = {(tuple(r["size"]), r["decode_path"]): r["images_per_s"] for r in result["limit"]}
    paths = {r["decode_path"] for r in result["pipeline"]}
    assert "pillow" in paths and ("pillow-draft" in paths) == result["draft_decoding"]
    for r in result["pipeline"]:
        parallel = min(max(r["num_workers"], 1), result["machine"]["cores"])
        assert r["limit_images_per_s"] == pytest.approx(parallel * limits[(tuple(r["size"]), r["decode_path"])], rel=0.01)
        assert 0 < r["images_per_s"] and 0 < r["cpu_ms_per_image"] and 0.02 < r["ratio_to_limit"] < 5
    assert {r["num_workers"] for r in result["pipeline"]} == set(result["config"]["workers"])


@pytest.mark.slow
def test_tiny_run_parallel_limit_when_there_are_cores_to_share(tiny):
    """With more than one core, the limit is also timed with one process per core decoding at once, and
    the rows that use every core are compared with it as well."""
    result, _ = tiny
    cores = result["machine"]["cores"]
    if cores < 2 or not sys.platform.startswith("linux"):
        pytest.skip("one core (or no fork): there is no parallel limit to measure")
    for r in result["limit"]:
        assert r["parallel_processes"] == cores and r["parallel_images_per_s"] > 0
        assert r["parallel_scaling"] == pytest.approx(
            statistics.median(p / (cores * s) for p, s in zip(r["parallel_rounds"], r["rounds"])), abs=1e-3)
        assert 0.2 < r["parallel_scaling"] < 2
    parallel = {(tuple(r["size"]), r["decode_path"]): r["parallel_images_per_s"] for r in result["limit"]}
    for r in result["pipeline"]:
        if min(max(r["num_workers"], 1), cores) == cores:
            assert r["parallel_limit_images_per_s"] == parallel[(tuple(r["size"]), r["decode_path"])]
            assert 0.02 < r["ratio_to_parallel_limit"] < 5
        else:
            assert "ratio_to_parallel_limit" not in r


@pytest.mark.slow
def test_tiny_run_decode_paths(tiny):
    result, _ = tiny
    rows = result["decode_paths"]
    assert {r["name"] for r in rows} == set(bench.DECODE_PATHS)
    for r in rows:
        if r["available"]:
            assert r["images_per_s"] > 0 and r["ratio_to_pillow"] > 0 and r["mean_abs_diff"] >= 0
        else:  # a library that is not installed is reported, never an error
            assert r["reason"] and r["images_per_s"] is None
    ref = [r for r in rows if r["name"] == "pillow"]
    assert all(r["ratio_to_pillow"] == 1.0 and r["mean_abs_diff"] == 0 for r in ref)
    draft = [r for r in rows if r["name"] == "pillow-draft"]
    assert all(r["available"] and r["mean_abs_diff"] < 4 for r in draft)
    if result["draft_decoding"]:
        assert all(result["masks_identical"].values())
    assert {s["decode_path"] for s in result["stages"]} == set(bench.PIPELINE_PATHS)


@pytest.mark.slow
def test_tiny_run_memory_rows_and_report(tiny, capsys):
    result, path = tiny
    rows = result["memory"]
    entries = result["config"]["memory_entries"]
    storages = ("list", "array", "shared")
    assert {(r["entries"], r["storage"]) for r in rows} == {(n, s) for n in entries for s in storages}
    for r in rows:
        assert r["total_pss_mb"] > 0 and r["peak_total_pss_mb"] >= r["total_pss_mb"] * 0.99
        assert r["jpeg_bytes_read"] > 0 and len(r["worker_pss_mb"]) == 2 and r["num_workers"] == 2
        assert 0.5 < r["ratio_to_1k"] < 2 and r["train_entries"] < r["entries"]
        assert r["built_by"] == ("build_loaders" if r["storage"] == "shared" else "build_loaders-style")
        assert r["start_method"] == bench.default_start_method()
    assert [r["ratio_to_1k"] for r in rows if r["entries"] == min(entries)] == [1.0, 1.0, 1.0]
    index = result["index_memory"]
    big = {r["kind"]: r for r in index["rows"] if r["n_entries"] == max(result["config"]["index_entries"])}
    assert big["list"]["index_mb"] > big["array"]["index_mb"] == big["shared"]["index_mb"]
    assert {(s["start_method"], s["kind"]) for s in index["summary"]} == {(bench.default_start_method(), k)
                                                                          for k in storages}
    assert bench.main(["report", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert result["machine"]["cpu_model"] in text and "python -m helpers.lab.bench all --tiny" in text
    for heading in ("### Decode paths", "### The pipeline against the limit", "### Memory as the data set grows",
                    "### The index alone"):
        assert heading in text
    assert ("WARNING: contended" in text) == result["contended"]


def test_missing_fields_names_what_is_absent():
    assert "pipeline" in bench.missing_fields({"machine": {}})
    assert "machine.cores" in bench.missing_fields({"machine": {}})
    assert "contended" in bench.missing_fields({})


def test_contention_probe_reports_a_slowdown():
    probe = bench.contention_probe(2, work=100_000)
    assert probe["processes"] == 2 and probe["single_s"] > 0 and probe["slowdown"] > 0
    assert probe["contended"] == (probe["slowdown"] > bench.CONTENTION_SLOWDOWN)


def test_an_unknown_or_missing_decoder_is_unavailable_not_an_error():
    decode, reason, _ = bench.decoder_availability("no-such-path")
    assert decode is None and "unknown decode path" in reason


def test_parser():
    args = bench.build_parser().parse_args(["all", "--tiny", "--json", "x.json"])
    assert (args.command, args.tiny, str(args.json)) == ("all", True, "x.json")
    args = bench.build_parser().parse_args(["growth", "--size", "notebook"])
    assert (args.command, args.size, args.tiny) == ("growth", "notebook", False)
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args([])


def test_training_time_report_marks_the_default_thread_count():
    rows = [{"loader": "reference (full decode, batches of 8)", "threads": 1, "default_threads": True,
             "median_seconds": 20.0, "ratio_to_reference": 1.0},
            {"loader": "default (reduced decode, 64 split to 8)", "threads": 1, "default_threads": True,
             "median_seconds": 19.0, "ratio_to_reference": 0.95},
            {"loader": "default (reduced decode, 64 split to 8)", "threads": 2, "default_threads": False,
             "median_seconds": 16.0, "ratio_to_reference": 0.8}]
    result = {"command": "python -m helpers.lab.bench training --threads default 2", "config": "quick",
              "epochs": 2, "rounds": 2, "num_workers": 2, "default_threads": 1, "rows": rows,
              "ratio_new_to_reference": 0.95, "machine": {"cores": 2, "cpu_model": "x", "torch": "t"}}
    text = bench.format_training_time(result)
    assert "0.80x" in text and text.count("(default)") == 2 and "default threads: 0.95" in text
    args = bench.build_parser().parse_args(["training", "--threads", "default", "2"])
    assert args.threads == ["default", "2"]


def test_transport_costs_rows_and_report():
    files, labels = bench.sample_files(16)
    rows = bench.transport_costs(files, labels, loader_batches=(8,), images=640, rounds=1)  # CPU read in 10 ms ticks
    assert [(r["num_workers"], r["loader_batch"]) for r in rows] == [(0, 8), (2, 8)]
    assert rows[0]["worker_cpu_us_per_image"] == 0.0 and rows[1]["main_cpu_us_per_image"] > 0
    text = bench.format_transport(rows, "python -m helpers.lab.bench transport")
    assert text.count(" us") == 4 and "decoding taken out" in text
    args = bench.build_parser().parse_args(["transport", "--images", "64"])
    assert (args.command, args.images, args.workers) == ("transport", 64, 2)
