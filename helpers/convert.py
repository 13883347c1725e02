"""Bring your own data: WIDER FACE and COCO-style annotations converted to a data folder with ``bbox.json``.

::

    python -m helpers.convert wider ANNOT_TXT IMAGES_DIR OUT_DIR [--keep-invalid] [--beyond clip|error]
                                    [--copy] [--decode]
    python -m helpers.convert coco ANNOT_JSON IMAGES_DIR OUT_DIR [--category face] [--crowd skip|keep|error]
                                   [--beyond clip|error] [--copy] [--decode]

The output is what every notebook reads: ``OUT_DIR/bbox.json`` (image name -> list of XYXY boxes in
pixels of the image as stored, the format :func:`helpers.datafiles.load_bboxes` checks) and the images
under the same relative names (``0--Parade/0_Parade_marchingband_1_5.jpg`` keeps its sub-folder).
The written folder is read back with :func:`helpers.datafiles.read_file_lists` (the project's own
loader and validator) before the converter reports success.

Decisions (each one counted in the :class:`ConversionReport`; nothing is dropped silently):

- **Images are hard-linked**, or copied when a link is impossible (another file system) or ``--copy``
  is given; never re-encoded, so the pixels are the annotated ones. Not symlinked: the loader rejects
  a name that resolves outside the data folder, which a link to the source folder would.
- **Only JPEG and PNG** (what :class:`helpers.dataset.FaceDataset` opens, decided by content); the image
  header is read for its size; any other file, a missing file, is an error naming the annotation line.
  ``--decode`` also decodes every image (``FaceDataset.validate``) and lists truncated or corrupt ones.
- **WIDER ``invalid`` faces** (flag 1: the annotators judged the face unrecognisable) are dropped
  unless ``--keep-invalid``.
- **Zero-size boxes** (width or height <= 0) are dropped: they mark no pixel. Listed in the report.
- **Boxes beyond the image** are clipped to it (``--beyond clip``, the default: WIDER has boxes that
  reach a pixel or two past the border) or make the conversion fail (``--beyond error``). A box left
  with no area after clipping (wholly outside) is dropped. Both counted and listed.
- **COCO crowd annotations** (``iscrowd: 1``, a box around a group) are skipped by default (a box
  around ten faces would teach the model that the space between faces is face); ``--crowd keep``
  keeps them as boxes, ``--crowd error`` refuses them. Annotations of other categories are ignored
  (counted). COCO images without a face annotation are kept with ``[]`` (negative examples).
- **An image listed twice** (twice in a WIDER file, or two COCO image entries with the same id or
  ``file_name``) is an error naming both places. Names that leave the images folder (``../x.jpg``,
  absolute paths) are errors.
- WIDER's "0 faces" records are followed by one placeholder line ``0 0 0 0 0 0 0 0 0 0`` (the layout
  ``torchvision.datasets.WIDERFace`` reads); it is consumed and not a face. A record with count 0 that
  is followed directly by the next image path is accepted too.

:func:`download_wider` fetches the real WIDER FACE training split with torchvision (notebook 08's opt-in
cell); offline, without ``gdown``, or when Google Drive refuses, it stops with a one-line
:class:`DownloadError` that says what happened and what to do.

Notebooks: 08 teaches it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import posixpath
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Sequence

from .datafiles import BBOX_FILE, IMAGE_SUFFIXES, read_file_lists
from .project import relative
from .errors import DataError

#: The formats the dataset opens (see helpers.dataset.FORMATS).
_FORMATS = ("JPEG", "PNG")
#: How many dropped/clipped faces the summary lists one by one.
_MAX_LISTED = 10
#: WIDER face line fields, in order.
WIDER_FIELDS = ("x", "y", "w", "h", "blur", "expression", "illumination", "invalid", "occlusion", "pose")


class ConversionError(DataError):
    """The annotation file cannot be converted; the message names the file and the line or the id."""


@dataclass
class ConversionReport:
    """What a conversion kept and dropped, and why."""

    source: str
    out_dir: Path
    images: int = 0
    faces: int = 0
    linked: int = 0
    copied: int = 0
    #: reason -> number of faces (annotations) dropped for it
    dropped: dict[str, int] = field(default_factory=dict)
    clipped: int = 0
    #: one line per dropped or clipped face: where it was and what happened
    notes: list[str] = field(default_factory=list)
    #: with ``decode=True``: what FaceDataset.validate() found (None: images not decoded)
    validation: Any = None

    def drop(self, reason: str, where: str, detail: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.notes.append(f"{where}: dropped ({reason}){': ' + detail if detail else ''}")

    def summary(self, limit: int = _MAX_LISTED) -> str:
        lines = [f"converted {self.source} -> {relative(self.out_dir / BBOX_FILE)}",
                 f"  kept {self.images} images with {self.faces} faces "
                 f"({self.linked} images hard-linked, {self.copied} copied); read back with "
                 "helpers.datafiles.read_file_lists: every name, box and file checks out"]
        if self.clipped:
            lines.append(f"  clipped to the image: {self.clipped} boxes")
        for reason, n in sorted(self.dropped.items()):
            lines.append(f"  dropped: {n} {reason}")
        if not self.clipped and not self.dropped:
            lines.append("  nothing dropped or clipped")
        lines += [f"    {note}" for note in self.notes[:limit]]
        if len(self.notes) > limit:
            lines.append(f"    ... and {len(self.notes) - limit} more (report.notes)")
        if self.validation is not None:
            lines.append("  decoded every image (FaceDataset.validate): "
                         + ("all readable, all boxes inside" if self.validation.ok else
                            f"{len(self.validation.problems)} with a problem; fix or remove them:"))
            lines += [f"    {p}" for p in self.validation.problems[:limit]]
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        """False only when ``decode=True`` found images that cannot be used."""
        return self.validation is None or self.validation.ok

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------------------- shared


def _check_name(name: str, where: str) -> str:
    """A relative POSIX image name that stays inside the images folder, normalised (``./a.jpg`` -> ``a.jpg``)."""
    if not name:
        raise ConversionError(f"{where}: the image name is empty")
    if "\\" in name:
        raise ConversionError(f"{where}: image name {name!r} contains '\\'; use '/' between folders")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        raise ConversionError(f"{where}: image name {name!r} is absolute; names must be relative to IMAGES_DIR")
    normal = posixpath.normpath(name)
    if normal in (".", "..") or normal.startswith("../"):
        raise ConversionError(f"{where}: image name {name!r} points outside IMAGES_DIR")
    if not normal.lower().endswith(IMAGE_SUFFIXES):
        raise ConversionError(f"{where}: {name!r} does not end like an image file ({', '.join(IMAGE_SUFFIXES)})")
    return normal


def _image_size(images_dir: Path, name: str, where: str) -> tuple[int, int]:
    """``(width, height)`` of the stored pixel grid of ``images_dir / name``, from the header only (no
    decoding). Messages name the image as the annotations do, inside the images folder."""
    from PIL import Image, UnidentifiedImageError

    path = images_dir / name
    shown = f"{relative(images_dir)}/{name}"
    if not path.is_file():
        raise ConversionError(f"{where}: image {shown} not found")
    try:
        with Image.open(path, formats=list(_FORMATS)) as im:
            return im.size
    except UnidentifiedImageError:
        raise ConversionError(f"{where}: {shown} is not a JPEG or PNG image "
                              "(the dataset reads only those; convert it first)") from None
    except OSError as e:
        raise ConversionError(f"{where}: cannot read {shown}: {e}") from None


def _fit_box(xywh: Sequence[float], width: int, height: int, where: str, beyond: str,
             report: ConversionReport) -> list[float] | None:
    """``[x, y, w, h]`` -> XYXY inside the image, or None (dropped and counted)."""
    x, y, w, h = (float(v) for v in xywh)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ConversionError(f"{where}: box [x, y, w, h] = {list(xywh)} has a value that is not a finite number")
    if w <= 0 or h <= 0:
        report.drop("zero-size boxes", where, f"width {w:g}, height {h:g}")
        return None
    x0, y0, x1, y1 = x, y, x + w, y + h
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return [x0, y0, x1, y1]
    if beyond == "error":
        raise ConversionError(
            f"{where}: box [x, y, w, h] = [{x:g}, {y:g}, {w:g}, {h:g}] reaches beyond the {height}x{width} "
            "(HxW) image (use --beyond clip to clip such boxes)")
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if not (cx1 > cx0 and cy1 > cy0):
        report.drop("boxes wholly outside the image", where, f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}] "
                    f"on a {height}x{width} (HxW) image")
        return None
    report.clipped += 1
    report.notes.append(f"{where}: clipped [{x0:g}, {y0:g}, {x1:g}, {y1:g}] to "
                        f"[{cx0:g}, {cy0:g}, {cx1:g}, {cy1:g}] ({height}x{width} (HxW) image)")
    return [cx0, cy0, cx1, cy1]


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConversionError(f"{relative(out_dir)}: the output folder exists and is not empty; "
                              "choose a new folder (nothing was written)")
    out_dir.mkdir(parents=True, exist_ok=True)


def _place(src: Path, dst: Path, copy: bool, report: ConversionReport) -> None:
    """Hard-link ``src`` to ``dst`` (copy when linking fails or ``copy``); the bytes stay the same."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(src, dst)
            report.linked += 1
            return
        except OSError:  # another file system, or links not supported: copy instead
            pass
    shutil.copyfile(src, dst)
    report.copied += 1


def _bbox_json_text(boxes: dict[str, list[list[float]]]) -> str:
    """One image per line, keys sorted, integer coordinates written as integers."""
    def num(v: float) -> int | float:
        return int(v) if float(v).is_integer() else round(float(v), 3)

    lines = [f"  {json.dumps(name)}: {json.dumps([[num(v) for v in b] for b in boxes[name]])}"
             for name in sorted(boxes)]
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"


def _write_folder(entries: dict[str, tuple[Path, list[list[float]]]], out_dir: Path, copy: bool,
                  report: ConversionReport, decode: bool = False) -> ConversionReport:
    """Place every image, write bbox.json last, and read the folder back with the project's loader
    (and, with ``decode``, decode every image with :meth:`FaceDataset.validate`)."""
    if not entries:
        raise ConversionError(f"{report.source}: no image to convert")
    _prepare_out(out_dir)
    for name, (src, _) in entries.items():
        _place(src, out_dir / name, copy, report)
    boxes = {name: b for name, (_, b) in entries.items()}
    tmp = out_dir / f".{BBOX_FILE}.tmp"
    tmp.write_text(_bbox_json_text(boxes), encoding="utf-8")
    os.replace(tmp, out_dir / BBOX_FILE)
    lists = read_file_lists(out_dir, test_fraction=0.0)  # the project's validator: names, boxes, files
    assert len(lists.files_train) == len(entries)
    report.images = len(entries)
    report.faces = sum(len(b) for b in boxes.values())
    if decode:
        from .dataset import FaceDataset

        dataset = FaceDataset(lists.files_train, lists.labels_train, root=out_dir)
        report.validation = dataset.validate(progress=False)
    return report


# --------------------------------------------------------------------------------------- WIDER FACE


def _is_image_line(text: str) -> bool:
    return text.lower().endswith(IMAGE_SUFFIXES)


def read_wider(annot_txt: str | Path) -> tuple[list[tuple[str, int, list[tuple[int, list[int]]]]], ConversionReport]:
    """Parse a WIDER FACE ``*_bbx_gt.txt``: ``[(name, line, [(face_line, 10 ints), ...]), ...]``.

    Line numbers are 1-based. Errors (:class:`ConversionError`) name the file and the line.
    """
    annot_txt = Path(annot_txt)
    shown = relative(annot_txt)
    try:
        raw = annot_txt.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not a name
    except FileNotFoundError:
        raise ConversionError(f"{shown}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConversionError(f"{shown}: not UTF-8 text (byte {e.start})") from None
    lines = raw.splitlines()
    report = ConversionReport(source=shown, out_dir=Path("."))
    records: list[tuple[str, int, list[tuple[int, list[int]]]]] = []
    seen: dict[str, int] = {}
    i, n = 0, len(lines)
    while i < n:
        text = lines[i].strip()
        lineno = i + 1
        if not text:  # blank lines between records (e.g. at the end) are harmless
            i += 1
            continue
        where = f"{shown}, line {lineno}"
        if not _is_image_line(text):
            hint = ""
            if records and text.split() and all(_is_int(t) for t in text.split()):
                prev, first, faces = records[-1]
                hint = (f" (a face line? {prev!r} on line {first} declares {len(faces)} face(s) on line "
                        f"{first + 1}: does that count agree with the face lines that follow it?)")
            raise ConversionError(f"{where}: expected an image path, got {text!r}{hint}")
        name = _check_name(text, where)
        if name in seen:
            raise ConversionError(f"{where}: image {name!r} is listed twice (first on line {seen[name]})")
        seen[name] = lineno
        if i + 1 >= n:
            raise ConversionError(f"{shown}, line {lineno}: image {name!r} has no face-count line (end of file)")
        count_text = lines[i + 1].strip()
        if not _is_int(count_text) or int(count_text) < 0:
            raise ConversionError(f"{shown}, line {lineno + 1}: expected the number of faces of {name!r} "
                                  f"(an integer >= 0), got {count_text!r}")
        count = int(count_text)
        i += 2
        faces: list[tuple[int, list[int]]] = []
        if count == 0:
            # WIDER writes one placeholder face line of zeros after a count of 0 (torchvision reads it).
            if i < n and lines[i].strip() and not _is_image_line(lines[i].strip()):
                values = _face_values(lines[i], f"{shown}, line {i + 1}")
                if any(values[:4]):
                    raise ConversionError(
                        f"{shown}, line {i + 1}: {name!r} on line {lineno} declares 0 faces, but this line "
                        f"holds a box {values[:4]}; fix the count on line {lineno + 1}")
                i += 1
            records.append((name, lineno, faces))
            continue
        for k in range(count):
            if i >= n or not lines[i].strip():
                raise ConversionError(
                    f"{shown}, line {min(i + 1, n)}: {name!r} on line {lineno} declares {count} faces but "
                    f"only {k} face line(s) follow (end of file or blank line)")
            text = lines[i].strip()
            if _is_image_line(text):
                raise ConversionError(
                    f"{shown}, line {i + 1}: {name!r} on line {lineno} declares {count} faces but only {k} "
                    f"face line(s) follow before the next image {text!r}")
            faces.append((i + 1, _face_values(lines[i], f"{shown}, line {i + 1}")))
            i += 1
        records.append((name, lineno, faces))
    if not records:
        raise ConversionError(f"{shown}: no image records (is this a WIDER FACE *_bbx_gt.txt file?)")
    return records, report


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _face_values(line: str, where: str) -> list[int]:
    parts = line.split()
    if len(parts) != len(WIDER_FIELDS) or not all(_is_int(p) for p in parts):
        raise ConversionError(f"{where}: expected {len(WIDER_FIELDS)} integers "
                              f"({' '.join(WIDER_FIELDS)}), got {line.strip()!r}")
    return [int(p) for p in parts]


def convert_wider(annot_txt: str | Path, images_dir: str | Path, out_dir: str | Path, *,
                  keep_invalid: bool = False, beyond: str = "clip", copy: bool = False,
                  decode: bool = False) -> ConversionReport:
    """Convert a WIDER FACE annotation file and its images folder (``WIDER_train/images``) to ``out_dir``.

    See the module docstring for what is dropped, clipped or refused. Returns the report; raises
    :class:`ConversionError` (naming file and line) without writing anything when the input is bad.
    """
    if beyond not in ("clip", "error"):
        raise ValueError(f"beyond must be 'clip' or 'error', got {beyond!r}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    records, report = read_wider(annot_txt)
    report.out_dir = out_dir
    entries: dict[str, tuple[Path, list[list[float]]]] = {}
    for name, lineno, faces in records:
        src = images_dir / name
        width, height = _image_size(images_dir, name, f"{report.source}, line {lineno}")
        boxes = []
        for face_line, values in faces:
            where = f"{report.source}, line {face_line} ({name})"
            if values[7] and not keep_invalid:
                report.drop("invalid faces (WIDER flag; --keep-invalid keeps them)", where)
                continue
            box = _fit_box(values[:4], width, height, where, beyond, report)
            if box is not None:
                boxes.append(box)
        entries[name] = (src, boxes)
    return _write_folder(entries, out_dir, copy, report, decode)


# --------------------------------------------------------------------------------------- COCO


def _get(obj: Any, key: str, kind: type | tuple, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ConversionError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConversionError(f"{where}: {key!r} must be {names}, got {value!r}")
    return value


def convert_coco(annot_json: str | Path, images_dir: str | Path, out_dir: str | Path, *,
                 category: str = "face", crowd: str = "skip", beyond: str = "clip",
                 copy: bool = False, decode: bool = False) -> ConversionReport:
    """Convert a COCO-style detection JSON (``images``, ``annotations``, ``categories``) for one category.

    ``bbox`` ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``. Every image entry is kept (``[]`` when
    it has no annotation of ``category``); its ``width``/``height`` must match the stored file.
    ``width``/``height`` may be absent. Errors name the file and the image or annotation id.
    """
    if crowd not in ("skip", "keep", "error"):
        raise ValueError(f"crowd must be 'skip', 'keep' or 'error', got {crowd!r}")
    if beyond not in ("clip", "error"):
        raise ValueError(f"beyond must be 'clip' or 'error', got {beyond!r}")
    annot_json, images_dir, out_dir = Path(annot_json), Path(images_dir), Path(out_dir)
    shown = relative(annot_json)
    try:
        data = json.loads(annot_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{shown}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConversionError(f"{shown}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ConversionError(f"{shown}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{shown}: the top level must be an object with images, annotations, categories")
    report = ConversionReport(source=shown, out_dir=out_dir)

    categories = _get(data, "categories", list, shown)
    wanted = [c for c in categories if isinstance(c, dict) and c.get("name") == category]
    if len(wanted) != 1:
        names = sorted(str(c.get("name")) for c in categories if isinstance(c, dict))
        why = "no category" if not wanted else f"{len(wanted)} categories"
        raise ConversionError(f"{shown}: {why} named {category!r} (categories: {names}); choose one with --category")
    category_id = wanted[0].get("id")

    images: dict[Any, tuple[str, int, int | None, int | None]] = {}  # id -> (name, index, width, height)
    by_name: dict[str, Any] = {}
    for k, im in enumerate(_get(data, "images", list, shown)):
        where = f"{shown}: images[{k}]"
        image_id = _get(im, "id", (int, str), where)
        where = f"{shown}: image id {image_id!r}"
        name = _check_name(_get(im, "file_name", str, where), where)
        # width/height are optional in COCO-like files; when given they must match the stored image
        width = _get(im, "width", int, where) if "width" in im else None
        height = _get(im, "height", int, where) if "height" in im else None
        if image_id in images:
            raise ConversionError(f"{shown}: image id {image_id!r} appears twice (images[{images[image_id][1]}] "
                                  f"and images[{k}])")
        if name in by_name:
            raise ConversionError(f"{where}: file {name!r} is listed twice (image ids {by_name[name]!r} and "
                                  f"{image_id!r})")
        by_name[name] = image_id
        images[image_id] = (name, k, width, height)

    boxes: dict[Any, list[list[float]]] = {image_id: [] for image_id in images}
    sizes: dict[Any, tuple[int, int]] = {}
    for image_id, (name, _, width, height) in images.items():
        where = f"{shown}: image id {image_id!r}"
        stored = _image_size(images_dir, name, where)
        if (width, height) != (None, None) and stored != (width, height):
            raise ConversionError(
                f"{where}: {name!r} is {stored[1]}x{stored[0]} (HxW) as stored but the JSON says {height}x{width}; "
                "boxes must refer to the stored pixels (an EXIF-rotated photo? a resized copy?)")
        sizes[image_id] = stored
    seen_ids: set[Any] = set()
    for k, ann in enumerate(_get(data, "annotations", list, shown)):
        ann_id = _get(ann, "id", (int, str), f"{shown}: annotations[{k}]")
        where = f"{shown}: annotation id {ann_id!r}"
        if ann_id in seen_ids:
            raise ConversionError(f"{where}: the id appears twice (the second time at annotations[{k}])")
        seen_ids.add(ann_id)
        if ann.get("category_id") != category_id:
            report.dropped["annotations of other categories"] = (
                report.dropped.get("annotations of other categories", 0) + 1)
            continue
        image_id = ann.get("image_id")
        if image_id not in images:
            raise ConversionError(f"{where}: image_id {image_id!r} is not in 'images'")
        where = f"{where} ({images[image_id][0]})"
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise ConversionError(f"{where}: 'bbox' must be [x, y, width, height] (4 numbers), got {bbox!r}")
        if ann.get("iscrowd", 0):
            if crowd == "error":
                raise ConversionError(f"{where}: a crowd annotation (iscrowd=1); use --crowd skip or keep")
            if crowd == "skip":
                report.drop("crowd annotations (--crowd keep keeps them)", where)
                continue
        width, height = sizes[image_id]
        box = _fit_box(bbox, width, height, where, beyond, report)
        if box is not None:
            boxes[image_id].append(box)
    entries = {images[i][0]: (images_dir / images[i][0], boxes[i]) for i in images}
    return _write_folder(entries, out_dir, copy, report, decode)


# --------------------------------------------------------------------------------------- WIDER FACE download

#: The host torchvision fetches WIDER FACE's images from (with the ``gdown`` package).
WIDER_HOST = "https://drive.google.com"


class DownloadError(RuntimeError):
    """The WIDER FACE download failed; the one-line message says what happened and what to do."""


def download_wider(root: str | Path, timeout: float = 10.0) -> Path:
    """Download WIDER FACE's training split with ``torchvision.datasets.WIDERFace`` into ``root/widerface``
    and return that folder, ready for :func:`convert_wider`: about 1.5 GB, the images from Google Drive
    (which torchvision reads with the ``gdown`` package; Colab has it), the annotations from the project
    page. WIDER FACE is for non-commercial research use: its terms are the reader's to accept.

    Offline (``WIDER_HOST`` does not answer within ``timeout`` seconds, through any proxy the environment
    names), without ``gdown``, or when the download itself fails (Google Drive's quota, a cut file), it
    raises :class:`DownloadError` with one line saying what happened and what to do, not a traceback from
    inside torchvision."""
    import importlib.util
    import urllib.error
    import urllib.request

    import torchvision

    skip = "or unset FACES_DOWNLOAD_WIDER to skip the download"
    try:
        urllib.request.urlopen(urllib.request.Request(WIDER_HOST, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # an HTTP answer, whatever its status: the host is reachable
    except OSError as e:  # URLError (no DNS, refused, no route), a timeout
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot reach {WIDER_HOST} to download WIDER FACE ({reason}): this machine seems "
                            f"to be offline; connect it to the internet (Colab is), {skip}") from None
    if importlib.util.find_spec("gdown") is None:
        raise DownloadError("torchvision downloads WIDER FACE from Google Drive with the gdown package, which is "
                            f"not installed: pip install gdown (Colab has it), {skip}")
    try:
        torchvision.datasets.WIDERFace(root=str(root), split="train", download=True)
    except Exception as e:  # Google Drive's quota, a file cut short (md5 mismatch), the connection lost
        detail = (str(e).strip().splitlines() or [""])[0][:200]
        raise DownloadError(f"downloading WIDER FACE failed ({type(e).__name__}: {detail}); try again later "
                            f"(Google Drive limits how often a file is fetched), {skip}") from None
    return Path(root) / "widerface"


# --------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers.convert",
                                description="Convert WIDER FACE or COCO annotations to a data folder with bbox.json.")
    sub = p.add_subparsers(dest="format", required=True)
    w = sub.add_parser("wider", help="a WIDER FACE wider_face_split/*_bbx_gt.txt file")
    w.add_argument("annotations", type=Path, help="e.g. wider_face_split/wider_face_train_bbx_gt.txt")
    w.add_argument("images", type=Path, help="e.g. WIDER_train/images")
    w.add_argument("out", type=Path, help="new (or empty) output folder")
    w.add_argument("--keep-invalid", action="store_true", help="keep faces flagged invalid (default: drop)")
    c = sub.add_parser("coco", help="a COCO-style detection JSON")
    c.add_argument("annotations", type=Path)
    c.add_argument("images", type=Path, help="the folder the file_name entries are relative to")
    c.add_argument("out", type=Path, help="new (or empty) output folder")
    c.add_argument("--category", default="face", help="the category to keep (default: face)")
    c.add_argument("--crowd", choices=["skip", "keep", "error"], default="skip",
                   help="crowd annotations: skip (default), keep as boxes, or refuse")
    for q in (w, c):
        q.add_argument("--beyond", choices=["clip", "error"], default="clip",
                       help="boxes reaching past the image: clip (default) or refuse")
        q.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
        q.add_argument("--decode", action="store_true",
                       help="also decode every image (FaceDataset.validate): finds truncated or corrupt files; "
                            "exit status 1 if any")
    args = p.parse_args(argv)
    try:
        if args.format == "wider":
            report = convert_wider(args.annotations, args.images, args.out, keep_invalid=args.keep_invalid,
                                   beyond=args.beyond, copy=args.copy, decode=args.decode)
        else:
            report = convert_coco(args.annotations, args.images, args.out, category=args.category,
                                  crowd=args.crowd, beyond=args.beyond, copy=args.copy, decode=args.decode)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
