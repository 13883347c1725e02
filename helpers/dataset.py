"""``FaceDataset``: keeps paths and boxes, reads one image only when asked for it, returns a dict sample.

Decoding is strict on purpose: a missing, empty, truncated or non-image file, or a box outside its
image, raises an error naming the index and the file, and :meth:`FaceDataset.validate` lists every such
problem in one pass, so bad data is fixed before a long run instead of crashing in the middle of one.

Conventions (the data contract):

- **Boxes refer to the image as stored**: the raw pixel grid Pillow decodes, before any EXIF orientation
  (that is how most tools that read pixels without EXIF, and data sets such as COCO, see the image).
  The dataset returns the image *as displayed* (EXIF orientation applied) and moves the boxes with it,
  for all 8 orientations. Images without an orientation tag (all synthetic ones) are unaffected.
- **Colour**: every image comes out as RGB ``uint8``. Grayscale, CMYK and palette images are converted;
  16-bit grayscale is scaled to 8 bits (``value >> 8``); anything with transparency (RGBA, LA, a palette or
  grayscale image with a transparent colour) is composited **over white**.
- **Only JPEG and PNG are opened** (decided by the file's content, not its name), with Pillow's
  decompression-bomb limit ``PIL.Image.MAX_IMAGE_PIXELS`` kept: an image above it is an error.
- **Reduced decoding** (``FaceDataset(decode_size=(h, w))``, what training uses): the image comes out
  already at ``(h, w)``, decoded at a reduced JPEG scale and resized with Pillow, the boxes scaled from
  the full image exactly as ``Rescale`` scales them. Without it (the default) every pixel is decoded:
  the reference path.
- ``'name'`` in a sample is the image's key in ``bbox.json``: its path relative to the data folder
  (``root``), e.g. ``image_000001.jpg`` or ``0--Parade/0_Parade_marchingband_1_5.jpg``. Without a
  ``root`` it is the file's base name.

Notebooks: 02 teaches it, 02a takes it through real folders and bad files; 03, 04, 07, 08 use it.
"""
from __future__ import annotations

import io
import operator
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from .datafiles import check_boxes_inside
from .errors import BBoxFormatError, DataError, ImageReadError
from .project import relative
from .transforms import scale_boxes

#: The image formats :func:`read_image` opens (Pillow format names).
FORMATS = ("JPEG", "PNG")

#: EXIF orientation tag value -> the Pillow transpose that shows the image upright
#: (the same table as ``PIL.ImageOps.exif_transpose``). 1 (or no tag) means "as stored".
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112


class _Bad(Exception):
    """Internal: why one entry cannot be used; the caller adds the index and the file name."""

    error_type: type[DataError] = DataError


class _Unreadable(_Bad):
    """The file itself is the problem (raised to the user as ImageReadError)."""

    error_type = ImageReadError


class _BadBoxes(_Bad):
    """The file is fine but its boxes are not (raised to the user as DataError)."""

    error_type = DataError


# ----------------------------------------------------------------------------- decoding


def _open_checked(source: Path | bytes) -> Image.Image:
    """Open ``source`` (a file, or a file's bytes as a shard holds them) as JPEG or PNG (header only),
    turning every failure into a one-line reason."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise _Unreadable("empty file (0 bytes)")
        path: Path | io.BytesIO = io.BytesIO(source)
    else:
        path = source
        try:
            status = path.stat()
        except FileNotFoundError:
            raise _Unreadable("file not found") from None
        except OSError as e:
            raise _Unreadable(f"cannot access the file ({e.strerror or e})") from e
        if not stat.S_ISREG(status.st_mode):
            raise _Unreadable("not a regular file")
        if status.st_size == 0:
            raise _Unreadable("empty file (0 bytes)")
    # Keep Pillow's decompression-bomb guard, but make its warning (above MAX_IMAGE_PIXELS) an
    # error as well as its error (above twice that). Filters are per process; workers are processes.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path, formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _Unreadable(f"image too large: {e}") from e
        except UnidentifiedImageError as e:
            raise _Unreadable(_describe_unidentified(source)) from e
        except OSError as e:
            raise _Unreadable(f"cannot open the file ({e.strerror or e})") from e


def _describe_unidentified(source: Path | bytes) -> str:
    """Say what a file that is neither JPEG nor PNG is, as far as Pillow or its first bytes tell."""
    in_memory = isinstance(source, (bytes, bytearray, memoryview))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(source) if in_memory else source) as other:
                return f"a {other.format} image; only {' and '.join(FORMATS)} files are read"
    except Exception:  # any failure only means "not an image Pillow knows"
        pass
    if in_memory:
        head = bytes(source[:16])
    else:
        with open(source, "rb") as f:
            head = f.read(16)
    return f"not a {' or '.join(FORMATS)} image (it starts with {head!r})"


def _exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1..8); 1 when absent, unreadable or out of range (as Pillow does)."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block: viewers ignore it, and so do we (pixels are intact)
        return 1
    return value if value in EXIF_TRANSPOSE else 1


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode JPEG/PNG produce to RGB (see the module docstring for the rules)."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode.startswith("I"):  # 16-bit grayscale PNG ("I;16", or "I" in older Pillow)
        values = np.asarray(img).astype(np.int64)
        gray = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK


def _stored_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The ``(width, height)`` in the STORED pixel grid that shows as ``size = (height, width)`` upright:
    orientations 5-8 turn the image by 90 degrees, so there the stored width is the displayed height."""
    height, width = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _decode(path: Path | bytes, apply_exif: bool = True,
            size: tuple[int, int] | None = None) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Decode ``path`` (a file, or the bytes of one).

    Returns (``HxWx3 uint8`` RGB array, shown upright when ``apply_exif``; the EXIF orientation 1..8;
    the stored ``(width, height)``, which the boxes refer to).

    ``size=None`` decodes every pixel: the reference path. ``size=(height, width)`` (the UPRIGHT size
    wanted; needs ``apply_exif``) returns the array at exactly that size, made without a full-size
    image: a JPEG is decoded in the DCT domain at the smallest of the scales 1/1, 1/2, 1/4, 1/8 whose
    result is still at least that large (``PIL.Image.draft``: a 480x640 JPEG at 1/4 costs about a
    sixteenth of the inverse DCT and colour conversion of the full image), then Pillow's bilinear
    filter resizes the rest of the way (with the ``box`` draft reports, so that a size not divisible by
    the scale maps exactly onto the full image), still as a PIL image, and the small image is turned
    upright. No full-size array is made. PNG (no DCT) is resized the same way from its full decode.
    The pixels differ slightly from the reference (about 1.5 grey levels on average at 1/4); the
    caller scales the boxes from the stored size, exactly as ``Rescale`` does on the reference path.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process: truncated files would be "
            "half-decoded without an error. Set it back to False to use helpers.dataset."
        )
    if size is not None and not apply_exif:
        raise ValueError("_decode: size= is the upright size, so it needs apply_exif=True")
    img = _open_checked(path)
    with img:
        fmt = img.format
        stored_size = img.size
        target = crop = None
        if size is not None and fmt == "JPEG":
            # A JPEG's EXIF block is in its header: read before the pixels, it decides which stored
            # side the draft must keep large enough. (A PNG's may follow the pixels: read it after load.)
            target = _stored_size(size, _exif_orientation(img))
            drafted = img.draft(img.mode, target)  # only configures the decoder; load() does the work
            if drafted is not None:
                crop = drafted[1]  # the full image in drafted pixels (fractional when not divisible)
        try:
            img.load()  # force the decode now: a truncated file fails here, not later
        except OSError as e:
            kind = "truncated" if "truncated" in str(e) else "corrupt"
            raise _Unreadable(f"{kind} {fmt} ({e})") from e
        except Exception as e:  # Pillow raises SyntaxError, ValueError, ... for damaged data
            raise _Unreadable(f"corrupt {fmt} ({type(e).__name__}: {e})") from e
        orientation = _exif_orientation(img)
        rgb = _to_rgb(img)
        if size is not None:
            target = _stored_size(size, orientation)
            if rgb.size != target or (crop is not None and tuple(crop) != (0, 0, *rgb.size)):
                rgb = rgb.resize(target, Image.Resampling.BILINEAR, box=crop)
        if apply_exif and orientation != 1:
            rgb = rgb.transpose(EXIF_TRANSPOSE[orientation])
        array = np.array(rgb)
    return array, orientation, stored_size


def _decode_size(size: Any) -> tuple[int, int] | None:
    """``None``, or ``size`` checked as a ``(height, width)`` pair of positive ints."""
    if size is None:
        return None
    try:
        height, width = (operator.index(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"decode_size must be None or (height, width) ints, got {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"decode_size must be positive, got {size!r}")
    return int(height), int(width)


def read_resized(path: str | os.PathLike, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``(image, full_size)``: the JPEG/PNG file as an ``HxWx3 uint8`` RGB array at ``size = (height,
    width)`` (upright), decoded as ``FaceDataset(decode_size=size)`` decodes it (no full-size image),
    and the ``(height, width)`` of the whole image shown upright. Errors as :func:`read_image`."""
    path = Path(os.fsdecode(path))
    try:
        array, orientation, (width, height) = _decode(path, size=_decode_size(size))
    except _Bad as e:
        raise e.error_type(f"{relative(path)}: {e}") from e.__cause__
    return array, ((width, height) if orientation in (5, 6, 7, 8) else (height, width))


def read_image(path: str | os.PathLike, apply_exif: bool = True) -> Image.Image:
    """Read one JPEG/PNG file as an RGB PIL image, EXIF orientation applied unless ``apply_exif=False``.

    Raises :class:`ImageReadError` naming the file for a missing, empty, truncated, too large or
    non-JPEG/PNG file. (A :class:`FaceDataset` sample moves the boxes with the orientation; this
    function only returns the picture.)
    """
    path = Path(os.fsdecode(path))
    try:
        array, _, _ = _decode(path, apply_exif=apply_exif)
    except _Bad as e:
        raise e.error_type(f"{relative(path)}: {e}") from e.__cause__
    return Image.fromarray(array)


# ----------------------------------------------------------------------------- boxes


def orient_boxes(boxes: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Move XYXY ``boxes`` of a stored ``width x height`` image to the image shown upright.

    ``orientation`` is the EXIF tag value; the result matches ``EXIF_TRANSPOSE[orientation]`` applied
    to the pixels (e.g. 6 = rotate 90 degrees clockwise: a point (x, y) goes to (height - y, x)).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = b.T
    w, h = float(width), float(height)
    moved = {
        1: (x0, y0, x1, y1),
        2: (w - x1, y0, w - x0, y1),  # mirror left-right
        3: (w - x1, h - y1, w - x0, h - y0),  # rotate 180
        4: (x0, h - y1, x1, h - y0),  # mirror top-bottom
        5: (y0, x0, y1, x1),  # transpose: (x, y) -> (y, x)
        6: (h - y1, x0, h - y0, x1),  # rotate 90 clockwise: (x, y) -> (h - y, x)
        7: (h - y1, w - x1, h - y0, w - x0),  # transverse: (x, y) -> (h - y, w - x)
        8: (y0, w - x1, y1, w - x0),  # rotate 90 counter-clockwise: (x, y) -> (y, w - x)
    }[orientation]
    return np.stack(moved, axis=1).astype(np.float32)


def _boxes_array(raw: Any) -> np.ndarray:
    """One image's labels as a ``(k, 4) float32`` array; an empty list gives ``(0, 4)``."""
    try:
        b = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise _BadBoxes(f"boxes are not a (k, 4) array of numbers ({e})") from e
    if b.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise _BadBoxes(f"boxes must have shape (k, 4), got {b.shape}")
    return b


def _check_boxes(boxes: np.ndarray, width: int, height: int) -> None:
    """Each box must be finite, non-empty (x_min < x_max, y_min < y_max) and inside the stored
    ``width x height`` image (the rule of :func:`helpers.datafiles.check_boxes_inside`)."""
    values = boxes.tolist()
    # One comparison chain per box decides the common case (a NaN fails every comparison, an infinity
    # the border's); only a box that fails it goes through the checks below, which say what is wrong.
    if all(0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height for x0, y0, x1, y1 in values):
        return
    for k, (x0, y0, x1, y1) in enumerate(values):
        if not (np.isfinite([x0, y0, x1, y1]).all() and x0 < x1 and y0 < y1):
            raise _BadBoxes(f"labels, box {k}: {[x0, y0, x1, y1]} is empty or not finite "
                            "(needs x_min < x_max and y_min < y_max)")
    try:
        check_boxes_inside(boxes, width, height, where="labels")
    except BBoxFormatError as e:
        raise _BadBoxes(str(e)) from e


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Problem:
    """One bad entry found by :meth:`FaceDataset.validate`."""

    index: int
    file: str
    reason: str

    def __str__(self) -> str:
        return f"index {self.index}, {self.file}: {self.reason}"


@dataclass
class ValidationReport:
    """Every problem one pass over a :class:`FaceDataset` found; ``ok`` when there are none."""

    n_checked: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_indices(self) -> list[int]:
        return [p.index for p in self.problems]

    @property
    def good_indices(self) -> list[int]:
        """Indices without a problem: ``torch.utils.data.Subset(dataset, report.good_indices)`` skips
        the bad ones explicitly, after the report (which names them) has been shown."""
        bad = set(self.bad_indices)
        return [i for i in range(self.n_checked) if i not in bad]

    def summary(self, limit: int = 50) -> str:
        """A readable report: one line per problem (the first ``limit`` of them)."""
        if self.ok:
            return f"checked {self.n_checked} images: all readable, all boxes inside their image"
        lines = [f"checked {self.n_checked} images: {len(self.problems)} with a problem"]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more (see report.problems)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class FaceDataset(torch.utils.data.Dataset):
    """Face images and their boxes, read lazily: one file per ``__getitem__``.

    ``files``: image paths (a list of ``str``/``Path``, or a ``helpers.storage.PathArray``).
    ``labels``: per image its XYXY boxes (a list of lists, a ``(k, 4)`` array, or a ``BoxArray``).
    A sample is ``{'image': HxWx3 uint8 RGB, 'boxes': (k, 4) float32, 'name': str}``,
    passed through ``transform`` when one is given. ``'name'`` is the path relative to ``root`` (the
    data folder: the bbox.json key, sub-folders included) or, without ``root``, the base name.
    ``__init__`` only keeps the two sequences: no file is opened until a sample is asked for.

    ``decode_size``: ``None`` (default) decodes every pixel and returns the image at its own size: the
    reference path. ``(height, width)`` returns every sample already at that (upright) size, image and
    boxes together, decoded without a full-size image: a JPEG at a reduced DCT scale, then resized
    the rest of the way with Pillow's bilinear filter while still a PIL image (see :func:`_decode`).
    The boxes are those of the reference path after ``Rescale(decode_size)``, bit for bit, so the
    masks are identical; the pixels differ by about 1.5 grey levels on average. A following
    ``Rescale`` to the same size then has nothing left to do; training uses it this way
    (``build_loaders`` passes ``decode_size=config.image_size``), several times faster per image.
    ``validate()`` and ``problem()`` always decode fully.
    """

    def __init__(self, files: Sequence, labels: Sequence, transform: Callable | None = None,
                 root: str | os.PathLike | None = None,
                 decode_size: tuple[int, int] | None = None) -> None:
        if len(files) != len(labels):
            raise DataError(f"FaceDataset: {len(files)} files but {len(labels)} label entries")
        self.files = files
        self.labels = labels
        self.transform = transform
        self.root = Path(os.fsdecode(root)) if root is not None else None
        self.decode_size = _decode_size(decode_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        sample = self.load(index)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def path(self, index: int) -> Path:
        """The path of entry ``index``."""
        return Path(os.fsdecode(self.files[index]))

    def name(self, index: int) -> str:
        """The ``'name'`` of entry ``index``: its path relative to ``root`` (POSIX), else its base name."""
        return self._name_of(self.path(index))

    def _name_of(self, path: Path) -> str:
        if self.root is None:
            return path.name
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.name

    def load(self, index: int) -> dict:
        """The untransformed sample ``index``: the image as displayed, its boxes moved with it."""
        index = self._check_index(index)
        path = self.path(index)
        try:
            return _read_sample(path, self.labels[index], name=self._name_of(path), size=self.decode_size)
        except _Bad as e:
            raise e.error_type(f"index {index}, {relative(path)}: {e}") from e.__cause__

    def problem(self, index: int) -> Problem | None:
        """What is wrong with entry ``index`` (decode + box check), or None when it is fine."""
        index = self._check_index(index)
        path = self.path(index)
        try:
            _read_sample(path, self.labels[index])
        except _Bad as e:
            return Problem(index, relative(path), str(e))
        return None

    def _check_index(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"index {index} out of range for a FaceDataset of {n} images")
        return i % n

    def validate(self, progress: bool = True, num_workers: int = 0) -> ValidationReport:
        """Decode every image once and check its boxes; collect every problem (nothing is skipped).

        ``num_workers > 0`` spreads the work over that many DataLoader worker processes.
        Returns a :class:`ValidationReport`; print it, and fix the data (or, deliberately, use
        ``Subset(dataset, report.good_indices)``) before training.
        """
        from tqdm import tqdm

        checker = _ProblemFinder(self)
        if num_workers > 0:
            results = torch.utils.data.DataLoader(
                checker, batch_size=None, num_workers=num_workers, collate_fn=_identity
            )
        else:
            results = (checker[i] for i in range(len(self)))
        problems = []
        for found in tqdm(results, total=len(self), desc="validate", disable=not progress):
            if found is not None:
                problems.append(found)
        problems.sort(key=lambda p: p.index)
        return ValidationReport(n_checked=len(self), problems=problems)

    def __repr__(self) -> str:
        size = "" if self.decode_size is None else f", decode_size={self.decode_size}"
        return f"FaceDataset({len(self)} images{size}, transform={self.transform!r})"


def _read_sample(source: Path | bytes, raw_boxes: Any, name: str | None = None,
                 size: tuple[int, int] | None = None) -> dict:
    """Decode one image (a file, or its bytes as read from a shard) and check and orient its boxes;
    raises _Bad with the reason. ``name``: the sample's ``'name'``, default the file's base name.
    ``size``: see :class:`FaceDataset`'s ``decode_size`` (image and boxes come out at that size)."""
    image, orientation, (width, height) = _decode(source, size=size)
    boxes = _boxes_array(raw_boxes)
    _check_boxes(boxes, width, height)  # boxes refer to the stored grid (before EXIF orientation)
    if orientation != 1:
        boxes = orient_boxes(boxes, orientation, width, height)
    if size is not None:
        # From the size the boxes refer to (the full image, upright), never from the reduced array:
        # the same float32 product as Rescale on the reference path, so the boxes are equal.
        upright = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
        boxes = scale_boxes(boxes, upright, image.shape[:2])
    if name is None:
        if not isinstance(source, Path):
            raise TypeError("_read_sample: pass name= when decoding bytes")
        name = source.name
    return {"image": image, "boxes": boxes, "name": name}


class _ProblemFinder(torch.utils.data.Dataset):
    """Wraps a FaceDataset so that item ``i`` is its :class:`Problem` (or None): used by validate()."""

    def __init__(self, dataset: FaceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Problem | None:
        return self.dataset.problem(index)


def _identity(x: Any) -> Any:
    return x
