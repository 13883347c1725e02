"""Tar shards in the WebDataset layout: write a data folder into them, read them back as ``FaceDataset`` samples.

A folder of small files is slow to stream from object storage or a network file system: every image
is one request. A *shard* is a plain tar file of a few hundred samples read front to back in one
request. Per sample it holds ``KEY.jpg`` (the image file's original bytes, unchanged; ``KEY.png`` for
a PNG) and ``KEY.json`` (``{"name": its bbox.json name, "boxes": [[x1, y1, x2, y2], ...]}``), next to
each other, which is the layout the ``webdataset`` library reads.

- :func:`write_shards` packs ``bbox.json``'s images in sorted name order into ``faces-000000.tar``,
  ``faces-000001.tar``, ... (closed by sample count or by bytes) plus an index ``shards.json`` with
  each shard's sample count. The same folder gives byte-identical shards.
- :class:`ShardDataset` reads them with ``webdataset`` and decodes every sample with the code
  :class:`~helpers.dataset.FaceDataset` uses (same keys, EXIF and colour rules, same ``transform``).
  A damaged member raises an error naming the shard and the member; nothing is skipped silently.
- :func:`assign_shards` gives each (rank, DataLoader worker) pair its own shards, so that over one
  epoch every sample is read exactly once in total. Shards are the unit of work: with uneven shards,
  or a shard count that does not divide by ranks x workers, the ranks get different sample counts
  (:func:`samples_per_rank`); a DDP loop must then stop every rank after the same number of steps.

Command line: ``python -m helpers.shards write DATA_DIR OUT_DIR [--max-count N | --max-bytes B]`` and
``python -m helpers.shards bench DATA_DIR SHARD_DIR [--cold]``.

Notebooks: 07 teaches it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .datafiles import BBOX_FILE, load_bboxes
from .dataset import _Bad, _read_sample
from .errors import DataError
from .project import relative

#: Shard file names: ``faces-000000.tar``, ``faces-000001.tar``, ...
SHARD_PATTERN = "faces-{:06d}.tar"
SHARD_GLOB = "faces-*.tar"
#: The index written next to the shards: each shard's name, sample count and size.
INDEX_FILE = "shards.json"
#: Default shard size by count. Real shard sets aim at 100 MB - 1 GB per shard; this data is small.
DEFAULT_MAX_COUNT = 100
_BLOCK = 512  # tar block
_RECORD = 20 * _BLOCK  # tarfile pads the archive to a multiple of this


# ----------------------------------------------------------------------------- writing


def _image_suffix(data: bytes) -> str:
    """``png`` for PNG bytes, else ``jpg`` (the reader decides by content anyway, as FaceDataset does)."""
    return "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg"


def sample_key(name: str) -> str:
    """The tar key of image ``name``: its path without the suffix, ``/`` and ``.`` replaced by ``_``
    (webdataset splits a member name at the first dot of its base name: ``KEY.jpg``)."""
    p = PurePosixPath(name)
    return str(p.with_suffix("")).replace("/", "_").replace(".", "_")


def _member_bytes(size: int) -> int:
    """What one member takes in a tar: a header block plus the data padded to whole blocks."""
    return _BLOCK + -(-size // _BLOCK) * _BLOCK


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # fixed metadata: the same input gives byte-identical shards
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    max_count: int | None = DEFAULT_MAX_COUNT,
    max_bytes: int | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Pack ``data_dir``'s images and boxes into tar shards in ``out_dir``; returns the shard paths.

    Samples go in sorted ``bbox.json`` name order (or the sorted ``names``, e.g. one split). A shard
    is closed before the sample that would take it past ``max_count`` samples or ``max_bytes`` bytes
    (tar headers and padding included; a single larger sample gets a shard of its own). Earlier
    ``faces-*.tar`` files in ``out_dir`` are removed first; each shard is written to a temporary
    file and renamed, and ``shards.json`` (the index) is written last.
    """
    from tqdm import tqdm

    if max_count is None and max_bytes is None:
        raise ValueError("write_shards: give max_count or max_bytes")
    if max_count is not None and max_count < 1:
        raise ValueError(f"write_shards: max_count must be >= 1, got {max_count}")
    if max_bytes is not None and max_bytes < 4 * _BLOCK:
        raise ValueError(f"write_shards: max_bytes must be >= {4 * _BLOCK}, got {max_bytes}")
    data_dir, out = Path(data_dir), Path(out_dir)
    boxes = load_bboxes(data_dir / BBOX_FILE)
    todo = sorted(boxes if names is None else names)
    unknown = [n for n in todo if n not in boxes]
    if unknown:
        raise DataError(f"write_shards: {len(unknown)} name(s) not in {relative(data_dir / BBOX_FILE)}: {unknown[:5]}")
    keys: dict[str, str] = {}
    for name in todo:
        key = sample_key(name)
        if key in keys:
            raise DataError(f"write_shards: {name!r} and {keys[key]!r} map to the same tar key {key!r}")
        keys[key] = name

    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)  # until it is rewritten, the folder reads as incomplete
    for stale in out.glob(SHARD_GLOB):
        stale.unlink()

    written: list[dict[str, Any]] = []
    tar: tarfile.TarFile | None = None
    tmp = Path()
    count = used = 0

    def close() -> None:
        nonlocal tar
        if tar is None:
            return
        tar.close()
        final = out / SHARD_PATTERN.format(len(written))
        os.replace(tmp, final)
        written.append({"name": final.name, "count": count, "bytes": final.stat().st_size})
        tar = None

    for name in tqdm(todo, desc=f"shards {out.name}", unit="img", disable=not progress, file=sys.stderr):
        path = data_dir / name
        try:
            image = path.read_bytes()
        except OSError as e:
            if tar is not None:  # leave no half-written shard behind
                tar.close()
                tmp.unlink(missing_ok=True)
            raise DataError(f"write_shards: cannot read {relative(path)} ({e.strerror or e})") from e
        meta = json.dumps({"name": name, "boxes": boxes[name]}, separators=(",", ":")).encode("utf-8")
        size = _member_bytes(len(image)) + _member_bytes(len(meta))
        if tar is not None:
            full_count = max_count is not None and count >= max_count
            # the archive's end: two zero blocks, then padding to a whole record
            total = -(-(used + size + 2 * _BLOCK) // _RECORD) * _RECORD
            full_bytes = max_bytes is not None and total > max_bytes
            if full_count or full_bytes:
                close()
        if tar is None:
            tmp = out / (SHARD_PATTERN.format(len(written)) + ".tmp")
            tar = tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT)
            count = used = 0
        key = sample_key(name)
        _add_member(tar, f"{key}.{_image_suffix(image)}", image)
        _add_member(tar, f"{key}.json", meta)
        count += 1
        used += size
    close()
    index = {"format": 1, "source": relative(data_dir), "n_samples": len(todo), "shards": written}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return [out / s["name"] for s in written]


def read_index(shard_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``shards.json`` that :func:`write_shards` wrote: ``{'n_samples', 'shards': [{name, count, bytes}]}``."""
    path = Path(shard_dir) / INDEX_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{relative(path)}: no shard index (write the shards with helpers.shards.write_shards)") from None


def shard_paths(shard_dir: str | os.PathLike) -> list[str]:
    """The shards of ``shard_dir`` in index order, as strings (what :class:`ShardDataset` takes)."""
    return [str(Path(shard_dir) / s["name"]) for s in read_index(shard_dir)["shards"]]


# ----------------------------------------------------------------------------- splitting the work


def assign_shards(shards: Sequence[Any], rank: int, world_size: int, worker: int, num_workers: int) -> list[Any]:
    """The shards (rank, worker) reads: first every ``world_size``-th shard from ``rank`` on (the rank's
    share), then every ``num_workers``-th of those from ``worker`` on, as webdataset's ``split_by_node``
    and ``split_by_worker`` cut them.

    Every shard goes to exactly one pair, so one epoch reads every sample exactly once in total, and
    the ranks' shard counts differ by one at most. Nothing is padded: with fewer shards than pairs some
    workers get none, and with uneven shards (or a count that does not divide) the pairs, and the
    ranks, get different sample counts.
    """
    if not (0 <= rank < world_size and 0 <= worker < num_workers):
        raise ValueError(f"assign_shards: rank {rank} of {world_size}, worker {worker} of {num_workers}")
    return list(shards[rank::world_size][worker::num_workers])


def _dist_rank_world() -> tuple[int, int]:
    """This process's (rank, world size): from the process group, else from torchrun's ``RANK`` and
    ``WORLD_SIZE``, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def epoch_shard_order(shards: Sequence[Any], seed: int, epoch: int, shuffle: bool = True) -> list[Any]:
    """The shard list of ``epoch``: permuted by ``(seed, epoch)`` when ``shuffle``, the same on every rank
    (each rank computes it alone; agreeing on it is what keeps the ranks' shares disjoint)."""
    shards = list(shards)
    if not shuffle:
        return shards
    order = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(len(shards))
    return [shards[i] for i in order]


def samples_per_rank(counts: Sequence[int], world_size: int, num_workers: int, seed: int = 0,
                     epoch: int = 0, shuffle: bool = True) -> list[int]:
    """How many samples each rank reads in ``epoch``, from the shards' sample counts (``shards.json``)."""
    order = epoch_shard_order(range(len(counts)), seed, epoch, shuffle)
    return [sum(counts[i] for w in range(num_workers) for i in assign_shards(order, r, world_size, w, num_workers))
            for r in range(world_size)]


def batches_per_rank(counts: Sequence[int], world_size: int, num_workers: int, batch_size: int, seed: int = 0,
                     epoch: int = 0, shuffle: bool = True) -> list[int]:
    """How many batches each rank's DataLoader yields in ``epoch`` (each worker batches its own shards,
    so each worker's last batch may be short). A DDP loop takes ``min()`` of these steps on every rank."""
    order = epoch_shard_order(range(len(counts)), seed, epoch, shuffle)
    return [sum(-(-sum(counts[i] for i in assign_shards(order, r, world_size, w, num_workers)) // batch_size)
                for w in range(num_workers)) for r in range(world_size)]


# ----------------------------------------------------------------------------- reading


def _label(url: str) -> str:
    """A shard as error messages show it: a repository-relative path for local files, else the URL."""
    return url if ":" in url.split("/", 1)[0] and not os.path.exists(url) else relative(url)


def decode_shard_sample(raw: dict[str, Any]) -> dict:
    """One sample as the tar holds it (``__key__``, ``__url__``, ``jpg``/``png``, ``json``) -> the
    ``FaceDataset`` sample ``{'image', 'boxes', 'name'}``, decoded by the same code. Errors name the
    shard and the member."""
    key, shard = raw.get("__key__", "?"), _label(str(raw.get("__url__", "?")))
    suffix = "jpg" if "jpg" in raw else "png" if "png" in raw else None
    if suffix is None or "json" not in raw:
        found = sorted(k for k in raw if not k.startswith("__"))
        raise DataError(f"shard {shard}, sample {key}: needs {key}.jpg (or .png) and {key}.json, found {found}")
    try:
        meta = json.loads(raw["json"])
        name, boxes = meta["name"], meta["boxes"]
    except (ValueError, TypeError, KeyError) as e:
        raise DataError(f"shard {shard}, member {key}.json: not a {{'name', 'boxes'}} JSON object ({e})") from e
    try:
        return _read_sample(raw[suffix], boxes, name=PurePosixPath(name).name)
    except _Bad as e:
        raise e.error_type(f"shard {shard}, member {key}.{suffix} ({name}): {e}") from e.__cause__


class ShardDataset(IterableDataset):
    """``FaceDataset`` samples streamed from tar shards (local paths or URLs such as ``pipe:curl -s ...``).

    Each (rank, worker) pair reads its own shards (:func:`assign_shards`) in an order fixed by
    ``(seed, epoch)``; within a pair, ``shuffle_buffer > 0`` mixes samples from a buffer of that many
    (seeded by seed, epoch, rank, worker). Call ``set_epoch(epoch)`` before each pass, as with
    ``DistributedSampler``. ``rank``/``world_size`` default to the process group's, read when the
    dataset is made (so workers started with ``spawn``, which do not inherit the group, agree), else
    to torchrun's ``RANK``/``WORLD_SIZE``, else 0 and 1.
    """

    def __init__(self, shards: Sequence[str | os.PathLike], transform: Callable | None = None, *,
                 shuffle: bool = True, shuffle_buffer: int = 0, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None) -> None:
        self.shards = [os.fspath(s) for s in shards]
        if not self.shards:
            raise ValueError("ShardDataset: no shards")
        self.transform = transform
        self.shuffle = shuffle
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        default_rank, default_world = _dist_rank_world()
        self.rank = default_rank if rank is None else int(rank)
        self.world_size = default_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"ShardDataset: rank {self.rank} of world size {self.world_size}")
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def my_shards(self) -> tuple[list[str], int, int]:
        """``(shards, rank, worker)`` of the calling process (a DataLoader worker or the main process)."""
        rank, world = self.rank, self.world_size
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = epoch_shard_order(self.shards, self.seed, self.epoch, self.shuffle)
        return assign_shards(order, rank, world, worker, workers), rank, worker

    def raw_samples(self, shards: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The undecoded samples of ``shards``, grouped by ``webdataset``; a damaged tar raises a
        DataError naming the shard and the last good member."""
        from webdataset.tariterators import tarfile_samples

        current = {"url": "?", "key": None}

        def source() -> Iterator[dict[str, str]]:
            for url in shards:
                current.update(url=url, key=None)
                yield {"url": url}

        try:
            for raw in tarfile_samples(source()):
                current["key"] = raw.get("__key__")
                yield raw
        except (tarfile.TarError, OSError, ValueError) as e:
            after = f"after member {current['key']}" if current["key"] else "at its start"
            reason = str(e.args[0]) if e.args else type(e).__name__
            raise DataError(f"shard {_label(current['url'])}: unreadable tar {after} ({reason.split(' @ ')[0]})") from e

    def __iter__(self) -> Iterator[dict]:
        shards, rank, worker = self.my_shards()
        samples = (decode_shard_sample(raw) for raw in self.raw_samples(shards))
        if self.shuffle and self.shuffle_buffer > 1:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, rank, worker]))
            samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
        for sample in samples:
            yield self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"ShardDataset({len(self.shards)} shards, transform={self.transform!r}, seed={self.seed})"


def _buffer_shuffle(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Shuffle a stream through a buffer of ``size`` items (what ``webdataset.shuffle`` does, seeded)."""
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            i = int(rng.integers(len(buf)))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    order = rng.permutation(len(buf))
    for i in order:
        yield buf[i]


def make_shard_loader(shards: Sequence[str | os.PathLike], batch_size: int | None, *, transform: Callable | None = None,
                      num_workers: int = 0, seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 0,
                      rank: int | None = None, world_size: int | None = None, collate_fn: Callable | None = None,
                      pin_memory: bool | None = None, persistent_workers: bool | None = None) -> DataLoader:
    """A DataLoader over a :class:`ShardDataset` (call ``loader.dataset.set_epoch(e)`` before each epoch).

    Each worker batches its own shards' samples, so a batch never mixes workers and the last batch of
    each worker may be short. ``batch_size=None`` yields single samples.
    """
    from .loader import seed_worker

    dataset = ShardDataset(shards, transform, shuffle=shuffle, shuffle_buffer=shuffle_buffer, seed=seed,
                           rank=rank, world_size=world_size)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn,
                      pin_memory=pin_memory, persistent_workers=persistent_workers, worker_init_fn=seed_worker,
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- throughput


def _drop_cache(paths: Sequence[Path]) -> bool:
    """Ask the kernel to drop ``paths`` from the page cache (``posix_fadvise(DONTNEED)``); False if unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def compare_throughput(data_dir: str | os.PathLike, shard_dir: str | os.PathLike, rounds: int = 3,
                       cold: bool = False, decode: bool = True) -> dict[str, Any]:
    """Images/s of reading and decoding every image, folder (``FaceDataset``) versus shards
    (``ShardDataset``), one process, no transform, measured alternately ``rounds`` times; medians.

    Warm (``cold=False``): the files are in the page cache after a first untimed pass. Cold: before
    every timed pass the files are dropped from it with ``posix_fadvise(DONTNEED)`` (Linux; the kernel
    may keep pages another process maps). ``decode=False`` only reads the bytes (one file per image
    versus the shards' raw samples), which isolates what the storage costs. Returns ``{'folder':
    img/s, 'shards': img/s, 'ratio', 'n_images', 'rounds', 'cold', 'decode', 'folder_runs', 'shard_runs'}``.
    """
    from .dataset import FaceDataset

    data_dir = Path(data_dir)
    boxes = load_bboxes(data_dir / BBOX_FILE)
    names = sorted(boxes)
    folder = FaceDataset([data_dir / n for n in names], [boxes[n] for n in names], root=data_dir)
    shards = ShardDataset(shard_paths(shard_dir), shuffle=False)
    image_files = [data_dir / n for n in names]
    shard_files = [Path(s) for s in shards.shards]

    def run_folder() -> int:
        if not decode:
            return sum(1 for f in image_files if f.read_bytes())
        return sum(1 for i in range(len(folder)) if folder.load(i) is not None)

    def run_shards() -> int:
        if not decode:
            return sum(1 for _ in shards.raw_samples(shards.shards))
        return sum(1 for _ in shards)

    runs: dict[str, list[float]] = {"folder": [], "shards": []}
    if not cold:
        run_folder(), run_shards()  # warm the page cache
    for _ in range(max(1, rounds)):
        for kind, fn, files in (("folder", run_folder, image_files), ("shards", run_shards, shard_files)):
            if cold and not _drop_cache(files):
                raise RuntimeError("compare_throughput(cold=True) needs os.posix_fadvise (Linux)")
            t0 = time.perf_counter()
            n = fn()
            runs[kind].append(n / (time.perf_counter() - t0))
    if n != len(names):
        raise DataError(f"compare_throughput: the shards hold {n} images, the folder {len(names)}")
    f, s = statistics.median(runs["folder"]), statistics.median(runs["shards"])
    return {"folder": f, "shards": s, "ratio": s / f, "n_images": len(names), "rounds": max(1, rounds),
            "cold": cold, "decode": decode, "folder_runs": runs["folder"], "shard_runs": runs["shards"]}


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers.shards", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="pack DATA_DIR (images + bbox.json) into tar shards in OUT_DIR")
    w.add_argument("data_dir", type=Path)
    w.add_argument("out_dir", type=Path)
    size = w.add_mutually_exclusive_group()
    size.add_argument("--max-count", type=int, default=None, help=f"samples per shard (default {DEFAULT_MAX_COUNT})")
    size.add_argument("--max-bytes", type=int, default=None, help="bytes per shard (tar overhead included)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    b = sub.add_parser("bench", help="images/s: the folder versus its shards")
    b.add_argument("data_dir", type=Path)
    b.add_argument("shard_dir", type=Path)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--cold", action="store_true", help="drop the files from the page cache before each pass")
    b.add_argument("--no-decode", action="store_true", help="only read the bytes (what the storage costs)")
    args = p.parse_args(argv)
    if args.command == "write":
        max_count = args.max_count if args.max_count is not None or args.max_bytes is not None else DEFAULT_MAX_COUNT
        try:
            paths = write_shards(args.data_dir, args.out_dir, max_count=max_count, max_bytes=args.max_bytes,
                                 progress=not args.quiet)
        except (DataError, ValueError) as e:
            p.error(str(e))
        index = read_index(args.out_dir)
        print(f"wrote {index['n_samples']} samples into {len(paths)} shards in {relative(args.out_dir)} "
              f"({paths[0].name} ... {paths[-1].name})" if paths else "wrote no shards (no images)")
        return 0
    r = compare_throughput(args.data_dir, args.shard_dir, rounds=args.rounds, cold=args.cold,
                           decode=not args.no_decode)
    print(f"{r['n_images']} images, {'decoded' if r['decode'] else 'bytes only'}, "
          f"{'cold' if r['cold'] else 'warm'} page cache, median of {r['rounds']}: "
          f"folder {r['folder']:.0f} img/s, shards {r['shards']:.0f} img/s (x{r['ratio']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
