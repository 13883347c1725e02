"""The decode part of the benchmark (``python -m helpers.lab.bench decode``): the JPEG decode paths
side by side, and the time of each stage of the pipeline.

:func:`run_decode`: each decode path of :data:`DECODE_PATHS` (Pillow's full decode, its draft decoding,
simplejpeg, PyTurboJPEG, torchvision, torchcodec), single-threaded, warm, decode + resize to each
training size, alternated within rounds: images/s, the ratio to the full decode, and the pixel
difference from it. A missing library is a reason in the table, not an error
(:func:`decoder_availability`). :func:`masks_identical`: draft decoding leaves every mask as the full
decode makes it. :func:`stage_times`: milliseconds per image of read, decode, resize, mask, ToTensor and
collate. Also the FaceDataset and collate function a decode path stands for (:func:`_face_dataset`,
:func:`_collate_for`), which the speed, transport and memory parts build on.

Notebooks: 06 uses it (through :mod:`helpers.lab.bench`); docs/benchmarks.md quotes its tables.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from .bench_machine import _median


#: Training sizes (height, width) of the two run configurations (helpers.runconfig: quick, full).
TRAINING_SIZES = ((120, 160), (240, 320))

#: Decode paths compared; ``pillow`` (full decode + Pillow bilinear resize) is the reference.
DECODE_PATHS = ("pillow", "pillow-draft", "simplejpeg", "pyturbojpeg", "torchvision", "torchcodec")


# --- decode paths --------------------------------------------------------------------------------


def _resize_pil(img, size: tuple[int, int]):
    """A PIL image resized to (h, w) with Pillow's bilinear (antialiased) filter, as an HxWx3 array."""
    import numpy as np
    from PIL import Image

    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img)



def _resize_array_pil(array, size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    if array.shape[:2] == tuple(size):
        return np.asarray(array)
    return _resize_pil(Image.fromarray(array), size)



def _pillow(path: str, size: tuple[int, int], draft: bool = False):
    from PIL import Image

    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (size[1], size[0]))  # JPEG DCT scaling by 1/2, 1/4 or 1/8, never below size
        im.load()
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        return _resize_pil(rgb, size)



def _decoder(name: str):
    """``(decode(path, size) -> HxWx3 uint8, note)`` for decode path ``name``; raises ImportError,
    OSError or RuntimeError (with the reason) when it cannot run here."""
    import warnings

    import numpy as np

    if name == "pillow":
        return (lambda p, s: _pillow(p, s)), "full decode + Pillow bilinear resize (the reference)"
    if name == "pillow-draft":
        try:
            from ..dataset import read_resized  # what FaceDataset(decode_size=...) runs
        except ImportError:
            return (lambda p, s: _pillow(p, s, draft=True)), "Image.draft: DCT-domain downscale, then Pillow bilinear"
        return ((lambda p, s: read_resized(p, s)[0]),
                "FaceDataset(decode_size=...): Image.draft DCT-domain downscale, then Pillow bilinear (the default)")
    if name == "simplejpeg":
        import simplejpeg

        def decode(p, s):
            with open(p, "rb") as f:
                data = f.read()
            arr = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=s[0], min_width=s[1])
            return _resize_array_pil(arr, s)
        return decode, f"simplejpeg {simplejpeg.__version__}: min_height/min_width scaled decode, then Pillow bilinear"
    if name == "pyturbojpeg":
        import turbojpeg

        tj = turbojpeg.TurboJPEG()  # raises when the system libturbojpeg cannot be loaded
        factors = sorted(tj.scaling_factors, key=lambda f: f[0] / f[1])

        def decode(p, s):
            with open(p, "rb") as f:
                data = f.read()
            width, height = tj.decode_header(data)[:2]
            factor = next(((n, d) for n, d in factors
                           if -(-width * n // d) >= s[1] and -(-height * n // d) >= s[0]), (1, 1))
            arr = tj.decode(data, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=factor)
            return _resize_array_pil(arr, s)
        return decode, "PyTurboJPEG: scaled decode (largest reduction that keeps the size), then Pillow bilinear"
    if name in ("torchvision", "torchcodec"):
        import torch
        from torchvision.transforms.v2 import functional as F

        if name == "torchvision":
            from torchvision.io import ImageReadMode, decode_jpeg, read_file

            def raw(p):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return decode_jpeg(read_file(p), mode=ImageReadMode.RGB)
            note = ("torchvision.io.decode_jpeg + v2.Resize(antialias=True); torchvision 0.29 marks its "
                    "image decoders deprecated in favour of torchcodec")
        else:
            from torchcodec.decoders import decode_jpeg as tc_decode_jpeg

            def raw(p):
                return tc_decode_jpeg(p)
            note = "torchcodec.decoders.decode_jpeg (torchcodec >= 0.16 decodes images) + v2.Resize(antialias=True)"

        def decode(p, s):
            t = raw(p)
            if tuple(t.shape[-2:]) != tuple(s):
                t = F.resize(t, list(s), antialias=True)
            return np.asarray(t.permute(1, 2, 0).contiguous().numpy())
        _ = torch
        return decode, note
    raise ValueError(f"unknown decode path {name!r}; expected one of {DECODE_PATHS}")



def decoder_availability(name: str, probe_file: str | None = None) -> tuple[Any, str | None, str]:
    """``(decode or None, reason unavailable or None, note)``: a missing library is a reason, not an error."""
    try:
        decode, note = _decoder(name)
        if probe_file is not None:
            decode(probe_file, (8, 8))
        return decode, None, note
    except Exception as e:  # ImportError, OSError (no libturbojpeg), RuntimeError ...
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        return None, reason, ""



def _time_decode(decode, files: Sequence[str], size: tuple[int, int], n: int) -> float:
    """Images/s of ``decode`` over ``n`` images cycling through ``files``, warm (one untimed image first)."""
    decode(files[0], size)
    start = time.perf_counter()
    for i in range(n):
        decode(files[i % len(files)], size)
    return n / (time.perf_counter() - start)



def run_decode(files: Sequence[str], sizes=TRAINING_SIZES, paths: Sequence[str] = DECODE_PATHS,
               n_images: int = 64, rounds: int = 3) -> list[dict[str, Any]]:
    """Each decode path, single-threaded, alternated within each of ``rounds`` rounds, per size:
    ``images_per_s`` (median), ``ratio_to_pillow`` (median of the per-round ratios) and the pixel
    difference from the reference (full decode + Pillow bilinear): ``mean_abs_diff`` (grey levels,
    over every pixel of every image) and ``max_abs_diff``."""
    import numpy as np
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        available = {}
        rows: list[dict[str, Any]] = []
        for name in paths:
            decode, reason, note = decoder_availability(name, files[0])
            available[name] = (decode, reason, note)
        for size in sizes:
            size = tuple(size)
            rates: dict[str, list[float]] = {n: [] for n in paths if available[n][0]}
            for r in range(rounds):
                order = list(rates)
                order = order[r % len(order):] + order[: r % len(order)]
                for name in order:
                    rates[name].append(_time_decode(available[name][0], files, size, n_images))
            reference = [available["pillow"][0](f, size).astype(np.int16) for f in files]
            for name in paths:
                decode, reason, note = available[name]
                row: dict[str, Any] = {"name": name, "size": list(size), "available": decode is not None,
                                       "reason": reason, "note": note}
                if decode is None:
                    row.update(images_per_s=None, ratio_to_pillow=None, mean_abs_diff=None, max_abs_diff=None)
                else:
                    diffs = [np.abs(decode(f, size).astype(np.int16) - ref) for f, ref in zip(files, reference)]
                    row.update(
                        images_per_s=round(_median(rates[name]), 1),
                        ratio_to_pillow=round(_median([a / b for a, b in zip(rates[name], rates["pillow"])]), 3),
                        mean_abs_diff=round(float(np.mean([d.mean() for d in diffs])), 3),
                        max_abs_diff=int(max(d.max() for d in diffs)),
                    )
                rows.append(row)
        return rows
    finally:
        torch.set_num_threads(previous)


# --- the FaceDataset a decode path stands for ----------------------------------------------------


def draft_supported() -> bool:
    """Whether this FaceDataset takes ``decode_size`` (draft JPEG decoding)."""
    import inspect

    from ..dataset import FaceDataset

    return "decode_size" in inspect.signature(FaceDataset.__init__).parameters



def _face_dataset(files, labels, size, decode_path: str, root=None):
    from ..dataset import FaceDataset
    from ..transforms import default_pipeline

    extra = {}
    if draft_supported():
        extra["decode_size"] = tuple(size) if decode_path == "pillow-draft" else None
    elif decode_path == "pillow-draft":
        raise RuntimeError("this FaceDataset has no decode_size (draft decoding)")
    return FaceDataset(files, labels, transform=default_pipeline(tuple(size)), root=root, **extra)



def _collate_for(decode_path: str):
    """The collate function of the pipeline ``decode_path`` stands for: ``build_loaders``' default
    (``collate_channels_last``, where this checkout has it) for ``pillow-draft``; ``default_collate``
    (None) for ``pillow``, the pipeline of notebooks 02-04 taken literally."""
    if decode_path != "pillow-draft":
        return None
    try:
        from ..collate import collate_channels_last
    except ImportError:
        return None
    return collate_channels_last



def masks_identical(files, labels, size) -> bool | None:
    """Whether draft decoding leaves every mask and box as the full decode makes them (None: no draft)."""
    import numpy as np

    if not draft_supported():
        return None
    full = _face_dataset(files, labels, size, "pillow")
    draft = _face_dataset(files, labels, size, "pillow-draft")
    for i in range(len(full)):
        a, b = full[i], draft[i]
        if not np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"])):
            return False
        if tuple(a["image"].shape) != tuple(b["image"].shape):
            return False
    return True


# --- per-stage time ------------------------------------------------------------------------------


def stage_times(files, labels, size=(120, 160), decode_path: str = "pillow", batch: int = 8,
                repeats: int = 3) -> dict[str, float]:
    """Milliseconds per image of each stage of the pipeline, in this process, 1 thread, warm:
    read the file, decode (full, or draft for ``pillow-draft``), resize, mask, ToTensor, collate (as
    :func:`_collate_for` says).
    The minimum over ``repeats`` passes (the least disturbed one)."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import default_collate

    from ..transforms import ConvertGroundTruth, Rescale, ToTensor

    collate = _collate_for(decode_path) or default_collate
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best: dict[str, float] = {}
        rescale, mask, to_tensor = Rescale(tuple(size)), ConvertGroundTruth(), ToTensor()
        for _ in range(repeats + 1):  # the first pass warms up and is not counted
            t = dict.fromkeys(("read", "decode", "resize", "mask", "to_tensor", "collate"), 0.0)
            done = []
            for f, boxes in zip(files, labels):
                c0 = time.perf_counter()
                with open(f, "rb") as fh:
                    data = fh.read()
                c1 = time.perf_counter()
                with Image.open(io.BytesIO(data)) as im:
                    if decode_path == "pillow-draft":
                        im.draft("RGB", (size[1], size[0]))
                    im.load()
                    image = np.array(im.convert("RGB") if im.mode != "RGB" else im)  # as FaceDataset: a writable array
                c2 = time.perf_counter()
                s = rescale({"image": image, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4)})
                c3 = time.perf_counter()
                s = mask(s)
                c4 = time.perf_counter()
                s = to_tensor(s)
                c5 = time.perf_counter()
                for k, a, b in (("read", c0, c1), ("decode", c1, c2), ("resize", c2, c3), ("mask", c3, c4),
                                ("to_tensor", c4, c5)):
                    t[k] += b - a
                done.append(s)
            for i in range(0, len(done), batch):
                c0 = time.perf_counter()
                collate(done[i:i + batch])
                t["collate"] += time.perf_counter() - c0
            per_image = {k: 1000 * v / len(files) for k, v in t.items()}
            if "_warm" not in best:
                best["_warm"] = 1.0
                continue
            for k, v in per_image.items():
                best[k] = min(best.get(k, float("inf")), v)
        best.pop("_warm")
        return {k: round(v, 4) for k, v in best.items()}
    finally:
        torch.set_num_threads(previous)
