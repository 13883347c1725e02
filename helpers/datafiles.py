"""Reading and validating ``bbox.json`` and building the train/validation/test lists of image paths and boxes.

The teaching version from the source article: keep *paths*, not pixels (images are read one at a time
later, by the Dataset); the boxes are small, so they are read and checked up front, once.

Notebooks: 01 teaches it; 00, 02, 03, 04, 05, 07, 08 use it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, NamedTuple, Sequence

from .errors import BBoxFormatError, DataError
from .project import relative

#: The name of the label file inside a data folder.
BBOX_FILE = "bbox.json"
#: Boxes of things drawn to look like faces (helpers.synth writes it; same format as bbox.json).
DISTRACTORS_FILE = "distractors.json"
#: File endings counted as images when the folder is checked for images that bbox.json does not list.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: How many names an error message lists before it says "... and N more".
_MAX_LISTED = 10


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def _is_number(value: Any) -> bool:
    # bool is a subclass of int in Python, but `true` is not a coordinate.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_key(key: str, base: Path, where: str) -> str:
    """Validate one bbox.json key and return its normalised POSIX form (``./a.jpg`` -> ``a.jpg``)."""
    if key == "":
        raise BBoxFormatError(f"{where}: entry '': the image name is empty")
    if "\x00" in key:
        raise BBoxFormatError(f"{where}: entry {key!r}: the image name contains a NUL character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise BBoxFormatError(
            f"{where}: entry {key!r}: the image name is not valid Unicode (lone surrogate)"
        ) from None
    # Rejected on every OS, so a bbox.json that passes here passes everywhere.
    if PurePosixPath(key).is_absolute() or PureWindowsPath(key).anchor:
        raise BBoxFormatError(
            f"{where}: entry {key!r}: the image name must be relative to the folder holding {BBOX_FILE}"
        )
    normal = posixpath.normpath(key)
    if normal == "." or normal == ".." or normal.startswith("../"):
        raise BBoxFormatError(f"{where}: entry {key!r}: the image name points outside the data folder")
    # A symlink inside the folder can still lead out of it; resolve() follows it. (base is resolved.)
    target = (base / normal).resolve()
    if target != base and base not in target.parents:
        raise BBoxFormatError(
            f"{where}: entry {key!r}: the image name resolves outside the data folder (a symlink?)"
        )
    return normal


def _check_box(box: Any, where: str) -> list[float]:
    """Validate one ``[x_min, y_min, x_max, y_max]`` box and return it as four floats."""
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise BBoxFormatError(f"{where}: expected [x_min, y_min, x_max, y_max] (4 numbers), got {box!r}")
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except OverflowError:
        raise BBoxFormatError(f"{where}: coordinate too large for a float: {box!r}") from None
    for name, v in zip(("x_min", "y_min", "x_max", "y_max"), (x0, y0, x1, y1)):
        if not math.isfinite(v):
            raise BBoxFormatError(f"{where}: {name} is {v}, not a finite number")
        if v < 0:
            raise BBoxFormatError(f"{where}: {name} ({v}) is negative; the origin is the top-left corner")
    if not x1 > x0:
        raise BBoxFormatError(f"{where}: x_max ({x1}) must be > x_min ({x0})")
    if not y1 > y0:
        raise BBoxFormatError(f"{where}: y_max ({y1}) must be > y_min ({y0})")
    return [x0, y0, x1, y1]


def load_bboxes(path: str | Path) -> dict[str, list[list[float]]]:
    """Read and validate a ``bbox.json``: image name -> list of ``[x_min, y_min, x_max, y_max]`` boxes.

    Names are returned as written in the file, in file order; coordinates as floats. Any problem raises
    :class:`BBoxFormatError` naming the file, the entry and (0-based) box index. Checked here: the file
    exists and is JSON; the top level is an object without duplicate keys; each name is a non-empty
    relative path that stays inside the folder (also through symlinks) and names no other entry's file;
    each value is a list of boxes of 4 finite, non-negative numbers with ``x_max > x_min`` and
    ``y_max > y_min``. Whether a box lies inside its image needs the image size: see
    :func:`check_boxes_inside`.
    """
    path = Path(path)
    shown = relative(path, folders=1)  # a bbox.json is told apart by its folder
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BBoxFormatError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise BBoxFormatError(f"{shown}: is a folder, not a JSON file") from None
    except UnicodeDecodeError as e:
        raise BBoxFormatError(f"{shown}: not UTF-8 text (byte {e.start})") from None

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise BBoxFormatError(f"{shown}: entry {key!r} appears more than once")
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise BBoxFormatError(f"{shown}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise BBoxFormatError(f"{shown}: not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BBoxFormatError(
            f"{shown}: the top level must be an object {{image name: [boxes]}}, got {type(data).__name__}"
        )

    base = path.parent.resolve()
    result: dict[str, list[list[float]]] = {}
    normal_names: dict[str, str] = {}
    for key, boxes in data.items():
        normal = _check_key(key, base, shown)
        if normal in normal_names:
            raise BBoxFormatError(
                f"{shown}: entry {key!r} names the same file as entry {normal_names[normal]!r}"
            )
        normal_names[normal] = key
        where = f"{shown}: entry {key!r}"
        if not isinstance(boxes, list):
            raise BBoxFormatError(
                f"{where}: expected a list of boxes ([] for no face), got {type(boxes).__name__}"
            )
        result[key] = [_check_box(box, f"{where}, box {i}") for i, box in enumerate(boxes)]
    return result


def check_boxes_inside(boxes: Any, width: int, height: int, where: str) -> None:
    """Raise :class:`BBoxFormatError` unless every box lies within the image, ``[0, W] x [0, H]``.

    ``boxes`` is a (k, 4) list or array of XYXY boxes (k may be 0); ``where`` starts the message, e.g.
    ``"data/bbox.json: entry 'image_000007.jpg'"``. A box may touch the right/bottom edge
    (``x_max == W``): pixel column ``W - 1`` covers ``[W - 1, W)``.
    """
    for i, box in enumerate(boxes):
        if len(box) != 4:
            raise BBoxFormatError(f"{where}, box {i}: expected 4 numbers, got {len(box)}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height):
            raise BBoxFormatError(
                f"{where}, box {i}: [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the image "
                f"(width {width}, height {height}: boxes must lie within [0, {width}] x [0, {height}])"
            )


def _unit_hash(seed: int, name: str) -> float:
    """A number in [0, 1) fixed by (seed, name): the same on every machine and every Python run."""
    digest = hashlib.sha256(f"{seed}\x00{name}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_train_test(
    names: Iterable[str], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split names into ``(train, test)``, both sorted, by a stable hash of ``(seed, name)``.

    An image goes to test when its hash (a number in [0, 1)) is below ``test_fraction``. So the
    decision for one image never depends on the others: adding images does not move any image
    between train and test. The test share is ``test_fraction`` on average, not exactly (a
    binomial draw: with 64 images and 0.2, expect 12.8 +- 3.2).
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    train: list[str] = []
    test: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"split_train_test: name {name!r} appears more than once")
        seen.add(name)
        (test if _unit_hash(seed, name) < test_fraction else train).append(name)
    return sorted(train), sorted(test)


def split_train_val_test(
    names: Iterable[str], test_fraction: float = 0.2, val_fraction: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """Split names into ``(train, val, test)``, each sorted, by the same stable hash as
    :func:`split_train_test`.

    Test: hash ``< test_fraction`` (exactly the test images of :func:`split_train_test`, so earlier
    test figures stay comparable); validation: ``test_fraction <= hash < test_fraction +
    val_fraction``, i.e. carved out of what used to be training images; train: the rest. Choices
    (loss weights, model size, the baseline's bins, when to stop) are made on validation, so the test
    split can be scored once, at the end, without having influenced anything.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1], got {val_fraction}")
    if test_fraction + val_fraction > 1.0 + 1e-12:
        raise ValueError(f"test_fraction + val_fraction = {test_fraction + val_fraction:g} exceeds 1")
    rest, test = split_train_test(names, test_fraction, seed)
    top = test_fraction + val_fraction
    train = [n for n in rest if _unit_hash(seed, n) >= top]
    val = [n for n in rest if _unit_hash(seed, n) < top]
    return train, val, test


class FileLists(NamedTuple):
    """The lists of the source article, image paths and their boxes for train and test, plus the
    validation split (appended last, so ``lists[:4]`` is the article's four lists)."""

    files_train: list[str]
    files_test: list[str]
    labels_train: list[list[list[float]]]
    labels_test: list[list[list[float]]]
    files_val: list[str]
    labels_val: list[list[list[float]]]


def _images_on_disk(folder: Path) -> set[str]:
    """Relative POSIX names of every file with an image ending under ``folder`` (symlinked folders not followed)."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder)
        for fn in filenames:
            if fn.lower().endswith(IMAGE_SUFFIXES):
                found.add((rel / fn).as_posix())
    return found


def read_file_lists(data_dir: str | Path, test_fraction: float = 0.2, seed: int = 0,
                    val_fraction: float = 0.0) -> FileLists:
    """Read ``data_dir/bbox.json`` and return the train/validation/test lists of image paths and boxes.

    ``files_*`` are ``str(data_dir / name)`` (relative when ``data_dir`` is), sorted by name;
    ``labels_*[i]`` is the list of ``[x_min, y_min, x_max, y_max]`` boxes of ``files_*[i]`` (``[]``: no
    face). The split is :func:`split_train_val_test` on the names (``val_fraction=0``: no validation
split, the train/test split of :func:`split_train_test`). Nothing is dropped silently: an image
    that bbox.json lists but the folder lacks, and an image file in the folder (any of
    :data:`IMAGE_SUFFIXES`) that bbox.json does not list, both raise :class:`DataError` naming them —
    list an image with ``[]`` if it has no face, or move it out of the folder. A split that leaves
    train, validation or test empty although the fractions asked for it also raises.
    """
    data_dir = Path(data_dir)
    bbox_path = data_dir / BBOX_FILE
    boxes = load_bboxes(bbox_path)
    shown = relative(bbox_path, folders=1)
    if not boxes:
        raise DataError(f"{shown}: lists no images: the data set is empty (add images with their boxes, "
                        "or point at another folder)")

    listed = {posixpath.normpath(k): k for k in boxes}
    missing = sorted(k for n, k in listed.items() if not (data_dir / n).is_file())
    if missing:
        raise DataError(f"{shown}: {len(missing)} listed image(s) not found in the folder: {_listing(missing)}")
    unlisted = sorted(_images_on_disk(data_dir) - set(listed))
    if unlisted:
        raise DataError(
            f"{shown}: {len(unlisted)} image(s) in the folder are not listed in {BBOX_FILE}: "
            f"{_listing(unlisted)} (list them with [] if they show no face, or move them out)"
        )

    train, val, test = split_train_val_test(boxes, test_fraction, val_fraction, seed)
    if ((0 < test_fraction and not test) or (0 < val_fraction and not val)
            or (test_fraction + val_fraction < 1 and not train)):
        asked = f"test_fraction={test_fraction}" + (f", val_fraction={val_fraction}" if val_fraction else "")
        parts = [f"{len(train)} for training"] + ([f"{len(val)} for validation"] if val_fraction else [])
        left = ", ".join(parts) + f" and {len(test)} for testing"
        raise DataError(f"{shown}: splitting {len(boxes)} image(s) with {asked} left {left}; "
                        "use more images or other fractions")
    return FileLists(
        files_train=[str(data_dir / n) for n in train],
        files_test=[str(data_dir / n) for n in test],
        labels_train=[boxes[n] for n in train],
        labels_test=[boxes[n] for n in test],
        files_val=[str(data_dir / n) for n in val],
        labels_val=[boxes[n] for n in val],
    )


def load_distractors(data_dir: str | Path) -> dict[str, list[list[float]]] | None:
    """``data_dir/distractors.json`` read and checked like ``bbox.json`` (name -> boxes of the face-like
    distractors, keys normalised to POSIX form), or ``None`` when the folder has no such file (your own
    data): then false positives on distractors are unknown, not zero."""
    path = Path(data_dir) / DISTRACTORS_FILE
    if not path.is_file():
        return None
    return {posixpath.normpath(k): v for k, v in load_bboxes(path).items()}
