"""Tar shards: the round trip gives FaceDataset's samples, damaged members are named, and splitting an
epoch over 2 ranks x 2 DataLoader workers reads every sample exactly once (shards) or exactly once
apart from the documented padding (DistributedSampler); the next epoch comes in another order."""
from __future__ import annotations

import collections
import io
import json
import math
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.errors import DataError, ImageReadError
from helpers.project import DATA_SAMPLE
from helpers.shards import (
    INDEX_FILE,
    ShardDataset,
    assign_shards,
    make_shard_loader,
    read_index,
    samples_per_rank,
    shard_paths,
    write_shards,
)
from helpers.transforms import default_pipeline

RANKS, WORKERS = 2, 2


def _folder_dataset(transform=None) -> FaceDataset:
    lists = read_file_lists(DATA_SAMPLE, test_fraction=0.0)
    return FaceDataset(lists.files_train, lists.labels_train, transform=transform)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """data_sample's 64 images in shards of 7: nine of 7 and one of 1 (uneven on purpose)."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(DATA_SAMPLE, out, max_count=7, progress=False)
    return out


def _same_sample(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], (np.ndarray, torch.Tensor)):
            assert type(a[key]) is type(b[key]) and a[key].dtype == b[key].dtype, key
            assert a[key].shape == b[key].shape and (np.asarray(a[key]) == np.asarray(b[key])).all(), key
        else:
            assert a[key] == b[key], key


# ----------------------------------------------------------------------------- writing


def test_layout_names_index_and_original_bytes(shard_dir):
    index = read_index(shard_dir)
    names = [s["name"] for s in index["shards"]]
    assert names == [f"faces-{i:06d}.tar" for i in range(10)]
    assert [s["count"] for s in index["shards"]] == [7] * 9 + [1]
    assert index["n_samples"] == 64
    with tarfile.open(shard_dir / names[0]) as tar:
        members = tar.getnames()
        assert members[:4] == ["image_000001.jpg", "image_000001.json", "image_000002.jpg", "image_000002.json"]
        assert tar.extractfile("image_000001.jpg").read() == (DATA_SAMPLE / "image_000001.jpg").read_bytes()
        meta = json.loads(tar.extractfile("image_000001.json").read())
    labels = json.loads((DATA_SAMPLE / "bbox.json").read_text())
    assert meta == {"name": "image_000001.jpg", "boxes": labels["image_000001.jpg"]}


def test_writing_twice_gives_identical_shards(shard_dir, tmp_path):
    write_shards(DATA_SAMPLE, tmp_path, max_count=7, progress=False)
    for name in [s["name"] for s in read_index(shard_dir)["shards"]] + [INDEX_FILE]:
        assert (tmp_path / name).read_bytes() == (shard_dir / name).read_bytes(), name


def test_max_bytes_bounds_every_shard(tmp_path):
    limit = 400_000
    paths = write_shards(DATA_SAMPLE, tmp_path, max_count=None, max_bytes=limit, progress=False)
    assert len(paths) > 2
    assert all(p.stat().st_size <= limit for p in paths), [p.stat().st_size for p in paths]
    assert sum(s["count"] for s in read_index(tmp_path)["shards"]) == 64
    # rewriting with larger shards removes the old ones
    write_shards(DATA_SAMPLE, tmp_path, max_count=64, progress=False)
    assert [p.name for p in sorted(tmp_path.glob("*.tar"))] == ["faces-000000.tar"]


def test_cli_writes_shards(tmp_path, capsys):
    from helpers.shards import main

    assert main(["write", str(DATA_SAMPLE), str(tmp_path), "--max-count", "32", "--quiet"]) == 0
    assert "64 samples into 2 shards" in capsys.readouterr().out


# ----------------------------------------------------------------------------- reading


def test_round_trip_gives_the_folder_samples(shard_dir):
    folder = _folder_dataset()
    streamed = list(ShardDataset(shard_paths(shard_dir), shuffle=False))
    assert len(streamed) == len(folder) == 64
    for i, sample in enumerate(streamed):
        _same_sample(sample, folder[i])


def test_round_trip_through_the_training_transforms(shard_dir):
    pipeline = default_pipeline((60, 80))
    folder = _folder_dataset(pipeline)
    streamed = ShardDataset(shard_paths(shard_dir)[:2], pipeline, shuffle=False)
    for i, sample in enumerate(streamed):
        _same_sample(sample, folder[i])
    assert i == 13


def _rewrite_member(src, dst, member: str, change) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read()
            if info.name == member:
                data = change(data)
                info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def test_a_corrupt_member_is_named_with_its_shard(shard_dir, tmp_path):
    shards = [tmp_path / "faces-000000.tar", tmp_path / "faces-000001.tar"]
    shards[0].write_bytes((shard_dir / shards[0].name).read_bytes())
    _rewrite_member(shard_dir / shards[1].name, shards[1], "image_000010.jpg", lambda b: b[: len(b) // 2])
    with pytest.raises(ImageReadError, match=r"shard .*faces-000001\.tar, member image_000010\.jpg .*truncated"):
        list(ShardDataset(shards, shuffle=False))


def test_bad_json_and_a_cut_tar_are_named(shard_dir, tmp_path):
    bad_json = tmp_path / "faces-000000.tar"
    _rewrite_member(shard_dir / bad_json.name, bad_json, "image_000003.json", lambda b: b"{not json")
    with pytest.raises(DataError, match=r"faces-000000\.tar, member image_000003\.json"):
        list(ShardDataset([bad_json], shuffle=False))
    cut = tmp_path / "faces-000001.tar"
    data = (shard_dir / cut.name).read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(DataError, match=r"shard .*faces-000001\.tar: unreadable tar after member image_0000"):
        list(ShardDataset([cut], shuffle=False))


# ----------------------------------------------------------------------------- splitting an epoch


def test_assign_shards_partitions_the_list():
    shards = list(range(10))
    parts = [assign_shards(shards, r, RANKS, w, WORKERS) for r in range(RANKS) for w in range(WORKERS)]
    assert sorted(sum(parts, [])) == shards
    assert parts == [[0, 4, 8], [2, 6], [1, 5, 9], [3, 7]]  # (rank 0, worker 0), (0, 1), (1, 0), (1, 1)
    with pytest.raises(ValueError):
        assign_shards(shards, 2, RANKS, 0, WORKERS)


def _names_by_rank(shard_dir, epoch_loaders, epoch):
    names = []
    for loader in epoch_loaders:
        loader.dataset.set_epoch(epoch)
        names.append([s["name"] for s in loader])
    return names


def test_shards_exactly_once_over_2_ranks_x_2_workers_and_a_new_order_next_epoch(shard_dir):
    shards = shard_paths(shard_dir)
    loaders = [make_shard_loader(shards, None, num_workers=WORKERS, rank=r, world_size=RANKS, seed=3,
                                 shuffle_buffer=4) for r in range(RANKS)]
    counts = [s["count"] for s in read_index(shard_dir)["shards"]]
    orders = []
    for epoch in (0, 1):
        by_rank = _names_by_rank(shard_dir, loaders, epoch)
        seen = collections.Counter(sum(by_rank, []))
        assert len(seen) == 64 and set(seen.values()) == {1}, "every sample exactly once per epoch"
        assert [len(n) for n in by_rank] == samples_per_rank(counts, RANKS, WORKERS, seed=3, epoch=epoch)
        orders.append(sum(by_rank, []))
    assert orders[0] != orders[1], "a second epoch must come in another order"
    again = _names_by_rank(shard_dir, loaders, 0)
    assert sum(again, []) == orders[0], "the same (seed, epoch) gives the same order"


def _names(batch: list[dict]) -> list[str]:
    return [s["name"] for s in batch]


def test_distributed_sampler_exactly_once_apart_from_padding():
    folder = Subset(_folder_dataset(), range(63))  # 63 does not divide by 2 ranks
    n, per_rank = len(folder), math.ceil(63 / RANKS)

    def epoch_names(epoch: int, drop_last: bool) -> list[list[str]]:
        out = []
        for rank in range(RANKS):
            sampler = DistributedSampler(folder, num_replicas=RANKS, rank=rank, shuffle=True, seed=5,
                                         drop_last=drop_last)
            sampler.set_epoch(epoch)
            loader = DataLoader(folder, batch_size=4, sampler=sampler, num_workers=WORKERS,
                                collate_fn=_names)
            out.append([name for batch in loader for name in batch])
        return out

    orders = []
    for epoch in (0, 1):
        by_rank = epoch_names(epoch, drop_last=False)
        assert [len(r) for r in by_rank] == [per_rank] * RANKS  # padded to equal shares
        seen = collections.Counter(sum(by_rank, []))
        assert len(seen) == n, "every sample at least once"
        assert sum(seen.values()) - n == per_rank * RANKS - n == 1, "one repeat: the padding"
        orders.append(sum(by_rank, []))
    assert orders[0] != orders[1]
    dropped = epoch_names(0, drop_last=True)
    seen = collections.Counter(sum(dropped, []))
    assert [len(r) for r in dropped] == [n // RANKS] * RANKS and set(seen.values()) == {1}
    assert len(seen) == n - 1, "drop_last leaves one sample out of this epoch instead"


def test_compare_throughput_reports_both_paths(shard_dir):
    from helpers.shards import compare_throughput

    for cold in (False, True):
        r = compare_throughput(DATA_SAMPLE, shard_dir, rounds=1, cold=cold, decode=False)
        assert r["n_images"] == 64 and r["folder"] > 0 and r["shards"] > 0 and r["cold"] is cold


def test_rank_and_world_size_come_from_torchrun_s_environment(shard_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ds = ShardDataset(shard_paths(shard_dir), shuffle=False)
    assert (ds.rank, ds.world_size) == (1, 2)
    assert ds.my_shards()[0] == shard_paths(shard_dir)[1::2]


def test_a_missing_image_stops_the_writer_without_leftovers(tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(DATA_SAMPLE, data)
    (data / "image_000005.jpg").unlink()
    with pytest.raises(DataError, match=r"cannot read .*image_000005\.jpg"):
        write_shards(data, tmp_path / "out", max_count=3, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["faces-000000.tar"]  # no .tmp, no index
