"""PSS of a process tree, and the list/array index measurement run on a small index (structure only)."""
from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest

from helpers.lab.bench import build_parser, format_memory, run_memory
from helpers.lab.memory import (
    anon_pss_of_tree,
    default_start_method,
    measure_index_memory,
    memory_metric,
    pss_of_tree,
    tree_memory,
)

ON_LINUX = sys.platform.startswith("linux")


def test_pss_of_this_process_is_positive():
    total = pss_of_tree()
    assert 1 << 20 < total < 1 << 40  # more than a MiB, less than a TiB
    assert memory_metric() == ("pss" if ON_LINUX else "uss")


def test_the_tree_includes_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        per_process = tree_memory()
        assert child.pid in per_process
        assert all(v > 0 for v in per_process.values())
        assert pss_of_tree() >= per_process[child.pid]
        assert pss_of_tree(child.pid) > 0
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not ON_LINUX, reason="Pss_Anon is Linux-only")
def test_anonymous_pss_is_part_of_the_total():
    anon = anon_pss_of_tree()
    if anon is None:
        pytest.skip("this kernel's smaps_rollup has no Pss_Anon")
    assert 0 < anon < pss_of_tree()


def test_start_method():
    # fork on Linux, where the copy-on-access trap bites; the platform's default elsewhere.
    expected = "fork" if ON_LINUX else multiprocessing.get_start_method()
    assert default_start_method() == expected


def test_measure_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        measure_index_memory("dict", 10)


def test_run_memory_on_a_small_index():
    # Two fresh processes with 2 workers each on 3,000 entries: checks the structure, not the 1M figures.
    results = run_memory(entries=3000, workers=2, batch_size=500)
    for kind in ("list", "array"):
        r = results[kind]
        assert r["kind"] == kind and r["n_entries"] == 3000 and r["num_workers"] == 2
        assert r["metric"] == memory_metric()
        assert r["single_bytes"] > 0 and r["total_bytes"] > 0 and r["index_bytes"] > 0
        assert len(r["worker_bytes"]) == len(r["worker_private_bytes"]) == 2
        assert r["total_bytes"] == pytest.approx(r["main_bytes"] + sum(r["worker_bytes"]))
        assert r["ratio"] == pytest.approx(r["total_bytes"] / r["single_bytes"])
        if ON_LINUX:
            assert r["start_method"] == "fork"
    assert results["list"]["checksum"] == results["array"]["checksum"] > 0
    assert results["list"]["index_bytes"] > results["array"]["index_bytes"]
    table = format_memory(results)
    assert "Index of 3,000 entries; 2 workers" in table
    assert table.count("\nlist ") >= 1 and table.count("\narray ") >= 1
    assert ("PASS" if results["passed"] else "FAIL") in table


def test_a_shuffled_pass_visits_the_same_items():
    # shuffle=True (the order training uses) reads every entry once, in a seeded random order.
    plain = measure_index_memory("array", 2000, num_workers=1, batch_size=300)
    shuffled = measure_index_memory("array", 2000, num_workers=1, batch_size=300, shuffle=True)
    assert (plain["shuffle"], shuffled["shuffle"]) == (False, True)
    assert shuffled["checksum"] == plain["checksum"] > 0
    assert len(shuffled["worker_private_bytes"]) == 1


def test_bench_cli_has_memory_and_needs_a_subcommand():
    args = build_parser().parse_args(["memory", "--entries", "5", "--workers", "1"])
    assert (args.command, args.entries, args.workers, args.batch_size) == ("memory", 5, 1, 1000)
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
