"""Synthetic face scenes: cartoon faces in clutter, written as JPEGs plus ``bbox.json``.

No face data set can be downloaded here, so the project draws its own. Each scene has 0-6 cartoon
faces (skin tones from light to dark, in-plane rotation, eyes, brows, nose, mouth, hair of many colours,
sometimes a neck and shoulders) on a cluttered background that also holds skin-coloured shapes and
featureless "heads" (skin ovals, some with hair) and eye-like pairs with no face around them, so that a
per-pixel colour rule cannot solve the task and a model must look at structure.

**What a box is.** A face is a rotated ellipse of skin, the *face oval*. Its box is the tight
axis-aligned box of that ellipse, hair, neck and shoulders excluded (a fringe drawn over the forehead
lies inside the box; hair beyond the oval lies outside it). Each edge is rounded to the nearest whole
pixel and the box is clipped to the image ``[0, W] x [0, H]``; boxes are XYXY lists of 4 ints with
``x_max > x_min`` and ``y_max > y_min``. Faces are only *placed* where at least 35 % of the box area and
at least 40 % of its width and of its height lie inside the image, so every face drawn has its box and
no box is ever dropped or degenerate. Faces are drawn far-to-near (small first); a nearer face (its oval,
hair and hat) may hide part of a farther one, but its bounding region covers at most 35 % of the farther
face's box. Sizes: the oval is 20-200 px tall at 480x640 (half log-uniform, half uniform over 50-200),
scaled with ``min(W, H) / 480``; 0-6 faces per scene, 10 % of scenes have none.

**Determinism.** Image ``i`` (1-based) is drawn from its own ``np.random.default_rng([seed, i])``, so
the output depends on neither the number of workers nor their order: the same seed gives the same
``bbox.json`` and, with the same Pillow and NumPy versions, byte-identical JPEGs.

**Files.** ``image_000001.jpg`` ... and ``bbox.json`` (sorted keys, one image per line), plus
``synth.json`` holding the parameters and :data:`GENERATOR_VERSION`, and ``distractors.json`` (same
format as ``bbox.json``): the boxes of the things drawn to look like a face without being one — the
featureless skin blobs and heads and the eye pairs (not the clutter shapes that happen to get a skin
colour) — so that evaluation can count the false positives that fire on them apart. ``bbox.json`` is
written last, atomically, so a folder from an interrupted run is never taken as complete by
:func:`ensure_dataset`. Recording the distractors consumes no random number: pixels and ``bbox.json``
are exactly those of earlier versions, so :data:`GENERATOR_VERSION` did not change, and
:func:`ensure_dataset` adds ``distractors.json`` to an older folder without redrawing its images.

Sizes are (height, width), as everywhere in this collection (torch's shapes, ``RunConfig.image_size``).

Command line: ``python -m helpers.synth --out DIR --n N --seed S [--size H W] [--workers K] [--quality Q]``.

Notebooks: 00 teaches it; 05, 08 use it.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .datafiles import BBOX_FILE  # the one definition of the labels file name

#: Bump whenever a change to the drawing code changes the output; ensure_dataset then regenerates.
GENERATOR_VERSION = 1
#: (height, width) of the generated scenes.
DEFAULT_SIZE = (480, 640)
#: JPEG quality: ~50 kB per 480x640 scene (the 64-image data_sample/ is ~3.3 MB).
DEFAULT_QUALITY = 88
META_FILE = "synth.json"
#: Boxes of the face-like distractors of every image (written by :func:`generate`).
DISTRACTORS_FILE = "distractors.json"
#: The largest n the 6-digit file names allow.
MAX_IMAGES = 999_999
_NAME_RE = re.compile(r"^image_(\d{6})\.jpg$")

Box = list[int]  # [x_min, y_min, x_max, y_max]
RGB = tuple[int, int, int]

# --------------------------------------------------------------------------------------------------
# Palettes
# --------------------------------------------------------------------------------------------------
#: Skin tones ordered light to dark; a face gets a random point between two neighbours, jittered.
SKIN_TONES: tuple[RGB, ...] = (
    (252, 228, 210), (246, 212, 184), (240, 196, 160), (228, 176, 134), (212, 156, 110),
    (190, 132, 88), (164, 108, 70), (136, 88, 56), (108, 70, 46), (84, 56, 38), (60, 42, 32),
)
#: Hair colours: black, browns, auburn, ginger, blondes, grey, white and a few dyed ones.
HAIR_COLOURS: tuple[RGB, ...] = (
    (22, 20, 20), (35, 28, 24), (60, 40, 28), (95, 62, 38), (120, 80, 48), (140, 62, 32),
    (185, 100, 50), (205, 170, 105), (225, 200, 140), (238, 226, 196), (150, 148, 145),
    (225, 225, 222), (45, 75, 190), (210, 80, 150), (60, 150, 90),
)
_HAIR_P = np.array([10, 10, 10, 9, 7, 5, 4, 6, 5, 3, 4, 3, 1, 1, 1], dtype=float)
_HAIR_P /= _HAIR_P.sum()
IRIS_COLOURS: tuple[RGB, ...] = ((70, 45, 25), (40, 28, 20), (60, 110, 170), (80, 120, 70), (110, 90, 50))
LIP_COLOURS: tuple[RGB, ...] = ((150, 40, 45), (180, 70, 80), (120, 50, 45), (200, 90, 100), (90, 35, 35))
#: Probability of 0, 1, ..., 6 faces in a scene.
FACE_COUNT_P = np.array([0.10, 0.20, 0.20, 0.16, 0.14, 0.11, 0.09])


def _u8(c) -> RGB:
    return tuple(int(min(255, max(0, round(float(v))))) for v in c)


def _mix(c1, c2, t: float) -> RGB:
    return _u8([a + (b - a) * t for a, b in zip(c1, c2)])


def _jitter(c, rng: np.random.Generator, amount: float) -> RGB:
    return _u8(np.asarray(c, dtype=float) + rng.uniform(-amount, amount, 3))


def _skin(rng: np.random.Generator) -> RGB:
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    return _jitter(_mix(SKIN_TONES[i], SKIN_TONES[i + 1], t - i), rng, 8)


def _hair(rng: np.random.Generator) -> RGB:
    return _jitter(HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=_HAIR_P)], rng, 10)


def _random_colour(rng: np.random.Generator) -> RGB:
    """A clutter colour: mostly anything, sometimes skin- or hair-like, sometimes grey."""
    r = rng.random()
    if r < 0.07:
        return _skin(rng)
    if r < 0.13:
        return _hair(rng)
    if r < 0.27:
        g = rng.uniform(20, 235)
        return _jitter((g, g, g), rng, 6)
    return _u8(rng.uniform(0, 255, 3))


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
def _ellipse_points(cx: float, cy: float, rx: float, ry: float, theta: float, n: int) -> list[tuple]:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    u, v = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(theta), math.sin(theta)
    return list(zip((cx + u * c - v * s).tolist(), (cy + u * s + v * c).tolist()))


def _n_points(rx: float, ry: float) -> int:
    return int(min(72, max(12, (rx + ry) * 0.8)))


def _fill_ellipse(draw: ImageDraw.ImageDraw, cx, cy, rx, ry, theta, fill, outline=None, width=1) -> None:
    if rx < 1.2 and ry < 1.2:
        r = max(rx, ry, 0.6)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        return
    pts = _ellipse_points(cx, cy, rx, ry, theta, _n_points(rx, ry))
    draw.polygon(pts, fill=fill)
    if outline is not None:
        draw.line(pts + pts[:1], fill=outline, width=width, joint="curve")


#: Hair styles with their probabilities, and the face-frame box (u0, u1, v0, v1) each can reach.
HAIR_STYLES = {"none": 0.08, "short": 0.37, "long": 0.30, "puffy": 0.12, "bun": 0.13}
_HAIR_EXTENT = {
    "none": (-1.0, 1.0, -1.0, 1.0),
    "short": (-1.18, 1.18, -1.13, 1.0),
    "long": (-1.35, 1.35, -1.2, 1.6),
    "puffy": (-1.55, 1.55, -1.5, 1.0),
    "bun": (-1.1, 1.1, -1.45, 1.0),
}


@dataclass(frozen=True)
class _Face:
    """A face oval: centre, semi-axes ``a`` (across) and ``b`` (chin to crown), rotation (radians)."""

    cx: float
    cy: float
    a: float
    b: float
    theta: float
    #: hair style ("none", "short", "long", "puffy", "bun"); decides how much a nearer face covers
    hair: str = "none"
    hat: bool = False

    def to_image(self, u, v) -> list[tuple]:
        """Face-frame points (``u`` in units of ``a``, ``v`` in units of ``b``, v down) -> image points."""
        u = np.asarray(u, dtype=float) * self.a
        v = np.asarray(v, dtype=float) * self.b
        c, s = math.cos(self.theta), math.sin(self.theta)
        return list(zip((self.cx + u * c - v * s).tolist(), (self.cy + u * s + v * c).tolist()))

    def point(self, u: float, v: float) -> tuple[float, float]:
        return self.to_image([u], [v])[0]

    def half_extent(self, a: float | None = None, b: float | None = None) -> tuple[float, float]:
        """Half width and half height of the axis-aligned box of the (rotated) ellipse."""
        a = self.a if a is None else a
        b = self.b if b is None else b
        c, s = math.cos(self.theta), math.sin(self.theta)
        return math.hypot(a * c, b * s), math.hypot(a * s, b * c)

    def raw_box(self) -> tuple[float, float, float, float]:
        hw, hh = self.half_extent()
        return self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh

    def extent_box(self) -> tuple[float, float, float, float]:
        """The box of everything drawn for this face: oval, hair, hat (what it can hide of a farther face)."""
        u0, u1, v0, v1 = _HAIR_EXTENT[self.hair]
        if self.hat:
            u0, u1, v0 = min(u0, -1.35), max(u1, 1.35), min(v0, -1.7)
        pts = self.to_image([u0, u1, u1, u0], [v0, v0, v1, v1])
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _clip_box(raw: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = (_round(v) for v in raw)
    return [min(max(x0, 0), width), min(max(y0, 0), height), min(max(x1, 0), width), min(max(y1, 0), height)]


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(p: Sequence[float], q: Sequence[float]) -> float:
    return _area((max(p[0], q[0]), max(p[1], q[1]), min(p[2], q[2]), min(p[3], q[3])))


# --------------------------------------------------------------------------------------------------
# Scene parts
# --------------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient between random colours, often mixed with a blotchy low-frequency texture.

    Built at a quarter of the size and upscaled once (it has no detail finer than that)."""
    small = (max(2, width // 4), max(2, height // 4))
    corners = np.stack([_random_colour(rng) for _ in range(4)]).astype(np.uint8).reshape(2, 2, 3)
    if rng.random() < 0.5:  # one-directional gradient
        corners[1] = corners[0] if rng.random() < 0.5 else corners[1]
        if rng.random() < 0.5:
            corners = corners.transpose(1, 0, 2).copy()
    img = Image.fromarray(np.ascontiguousarray(corners)).resize(small, Image.BILINEAR)
    if rng.random() < 0.6:
        gw, gh = int(rng.integers(3, 14)), int(rng.integers(3, 11))
        tex = rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8)
        blot = Image.fromarray(tex).resize(small, Image.BICUBIC)
        img = Image.blend(img, blot, float(rng.uniform(0.2, 0.6)))
    return img.resize((width, height), Image.BILINEAR)


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    """Rectangles, ellipses, polygons, lines and stripes in varied colours (some skin-like)."""
    scale = min(width, height) / 480
    if rng.random() < 0.3:  # wallpaper stripes
        colour = _random_colour(rng)
        step = rng.uniform(12, 60) * scale
        w = max(1, int(step * rng.uniform(0.15, 0.5)))
        vertical = rng.random() < 0.5
        for k in range(int((width if vertical else height) / step) + 1):
            p = k * step
            seg = [(p, 0), (p, height)] if vertical else [(0, p), (width, p)]
            draw.line(seg, fill=colour, width=w)
    for _ in range(int(rng.integers(8, 36))):
        kind = rng.random()
        colour = _random_colour(rng)
        cx, cy = rng.uniform(-0.05, 1.05) * width, rng.uniform(-0.05, 1.05) * height
        size = math.exp(rng.uniform(math.log(6), math.log(260))) * scale
        if kind < 0.30:
            w, h = size, size * rng.uniform(0.2, 2.0)
            if rng.random() < 0.7:
                draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=colour)
            else:
                draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], outline=colour,
                               width=max(1, int(rng.uniform(1, 6) * scale)))
        elif kind < 0.55:
            _fill_ellipse(draw, cx, cy, size / 2, size / 2 * rng.uniform(0.3, 1.0), rng.uniform(0, math.pi), colour)
        elif kind < 0.72:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = size / 2 * rng.uniform(0.4, 1.0, k)
            draw.polygon(list(zip((cx + rad * np.cos(ang)).tolist(), (cy + rad * np.sin(ang)).tolist())), fill=colour)
        else:
            ang = rng.uniform(0, math.pi)
            length = size * rng.uniform(1, 3)
            dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour,
                      width=max(1, int(rng.uniform(1, 8) * scale)))


def _eye_pair(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> tuple:
    """Two eyes (sclera + iris, or dark dots), sometimes with brows, with no face around them.

    Returns the (unclipped) box of both eyes and where their brows may be."""
    scale = min(width, height) / 480
    r = math.exp(rng.uniform(math.log(2.0), math.log(14.0))) * scale
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    theta = rng.uniform(-0.5, 0.5)
    gap = r * rng.uniform(2.2, 4.0)
    dx, dy = math.cos(theta) * gap / 2, math.sin(theta) * gap / 2
    dark = _jitter((30, 25, 20), rng, 15)
    style = rng.random()
    for sx in (-1, 1):
        ex, ey = cx + sx * dx, cy + sx * dy
        if style < 0.6:
            _fill_ellipse(draw, ex, ey, r, r * 0.6, theta, _jitter((240, 240, 235), rng, 10))
            _fill_ellipse(draw, ex, ey, r * 0.45, r * 0.45, 0, dark)
        else:
            _fill_ellipse(draw, ex, ey, r * 0.55, r * 0.7, theta, dark)
        if rng.random() < 0.4:
            bx, by = ex + math.sin(theta) * r * 1.6, ey - math.cos(theta) * r * 1.6
            draw.line([(bx - dx * 0.4, by - dy * 0.4), (bx + dx * 0.4, by + dy * 0.4)], fill=dark,
                      width=max(1, int(r * 0.35)))
    # Eyes reach r from their centres (|theta| <= 0.5 rad), brows about 2r above: a slightly loose box.
    return cx - abs(dx) - r, cy - abs(dy) - 2.2 * r, cx + abs(dx) + r, cy + abs(dy) + r


def _sample_face_size(rng: np.random.Generator, scale: float) -> tuple[float, float]:
    """Semi-axes (a, b): oval height 20..200 px at scale 1 (half log-uniform, half uniform over 50..200),
    width 0.66..0.92 of it."""
    if rng.random() < 0.5:
        height = math.exp(rng.uniform(math.log(20.0), math.log(200.0))) * scale
    else:
        height = rng.uniform(50.0, 200.0) * scale
    height = max(height, 8.0)
    return height / 2 * rng.uniform(0.66, 0.92), height / 2


def _sample_rotation(rng: np.random.Generator) -> float:
    deg = rng.uniform(-12, 12) if rng.random() < 0.7 else rng.uniform(-40, 40)
    return math.radians(deg)


def _face_fits(face: _Face, width: int, height: int) -> bool:
    raw = face.raw_box()
    clipped = _clip_box(raw, width, height)
    w_raw, h_raw = raw[2] - raw[0], raw[3] - raw[1]
    w_c, h_c = clipped[2] - clipped[0], clipped[3] - clipped[1]
    return (w_c >= max(2, 0.4 * w_raw) and h_c >= max(2, 0.4 * h_raw)
            and _area(clipped) >= 0.35 * _area(raw))


def _occludes(near: _Face, far: _Face) -> float:
    """Share of ``far``'s box that ``near`` (head and hair) can cover."""
    fb = far.raw_box()
    return _intersection(near.extent_box(), fb) / max(_area(fb), 1e-9)


def _place_faces(rng: np.random.Generator, width: int, height: int) -> list[_Face]:
    """Sample the faces of one scene, sorted far-to-near (small first) for drawing."""
    scale = min(width, height) / 480
    n_target = int(rng.choice(len(FACE_COUNT_P), p=FACE_COUNT_P))
    faces: list[_Face] = []
    for _ in range(n_target):
        for _attempt in range(30):
            a, b = _sample_face_size(rng, scale)
            theta = _sample_rotation(rng)
            probe = _Face(0.0, 0.0, a, b, theta)
            hw, hh = probe.half_extent()
            mode = rng.random()
            if mode < 0.3 and faces:  # next to (often overlapping) an earlier face
                other = faces[int(rng.integers(len(faces)))]
                ang = rng.uniform(0, 2 * math.pi)
                dist = (max(other.a, other.b) + max(a, b)) * rng.uniform(0.45, 0.95)
                cx, cy = other.cx + dist * math.cos(ang), other.cy + dist * math.sin(ang)
            elif mode < 0.42:  # across a random image edge
                edge = int(rng.integers(4))
                cx, cy = rng.uniform(0, width), rng.uniform(0, height)
                if edge == 0:
                    cx = rng.uniform(-0.3, 0.5) * hw
                elif edge == 1:
                    cx = width - rng.uniform(-0.3, 0.5) * hw
                elif edge == 2:
                    cy = rng.uniform(-0.3, 0.5) * hh
                else:
                    cy = height - rng.uniform(-0.3, 0.5) * hh
            else:  # anywhere, inside the image where it fits
                cx = rng.uniform(min(hw, width / 2), max(width - hw, width / 2))
                cy = rng.uniform(min(hh, height / 2), max(height - hh, height / 2))
            hair = str(rng.choice(list(HAIR_STYLES), p=list(HAIR_STYLES.values())))
            face = _Face(float(cx), float(cy), a, b, theta, hair, bool(rng.random() < 0.07))
            if not _face_fits(face, width, height):
                continue
            ok = True
            for other in faces:
                near, far = (face, other) if face.b >= other.b else (other, face)
                if _occludes(near, far) > 0.35:
                    ok = False
                    break
            if ok:
                faces.append(face)
                break
    faces.sort(key=lambda f: f.b)
    return faces


def _draw_body(draw: ImageDraw.ImageDraw, rng: np.random.Generator, face: _Face, skin: RGB) -> None:
    """Neck (skin, a little darker) and shoulders (clothing) below the chin."""
    neck = _mix(skin, (0, 0, 0), rng.uniform(0.05, 0.2))
    w = rng.uniform(0.3, 0.45)
    draw.polygon(face.to_image([-w, w, w, -w], [0.5, 0.5, 1.55, 1.55]), fill=neck)
    body = _Face(*face.point(0.0, rng.uniform(2.3, 2.7)), face.a * rng.uniform(2.0, 2.8), face.b * 1.0,
                 face.theta * 0.3)
    _fill_ellipse(draw, body.cx, body.cy, body.a, body.b, body.theta, _random_colour(rng))


def _draw_hair_back(draw, rng, face: _Face, style: str, colour: RGB) -> None:
    if style == "short":
        cx, cy = face.point(0.0, -0.18)
        _fill_ellipse(draw, cx, cy, face.a * rng.uniform(1.06, 1.18), face.b * rng.uniform(0.86, 0.95),
                      face.theta, colour)
    elif style == "long":
        cx, cy = face.point(0.0, -0.08)
        w = rng.uniform(1.15, 1.35)
        _fill_ellipse(draw, cx, cy, face.a * w, face.b * rng.uniform(1.02, 1.1), face.theta, colour)
        low = rng.uniform(1.0, 1.6)
        draw.polygon(face.to_image([-w, w, w * 0.9, -w * 0.9], [0.0, 0.0, low, low]), fill=colour)
    elif style == "puffy":
        cx, cy = face.point(0.0, -0.3)
        _fill_ellipse(draw, cx, cy, face.a * rng.uniform(1.35, 1.55), face.b * rng.uniform(1.05, 1.2),
                      face.theta, colour)
    elif style == "bun":
        cx, cy = face.point(0.0, -0.15)
        _fill_ellipse(draw, cx, cy, face.a * 1.1, face.b * 0.92, face.theta, colour)
        bx, by = face.point(rng.uniform(-0.3, 0.3), -1.1)
        _fill_ellipse(draw, bx, by, face.a * 0.45, face.b * 0.32, face.theta, colour)


def _draw_fringe(draw, rng, face: _Face, colour: RGB) -> None:
    """Hair over the forehead: the part of the oval above a wavy line (inside the box)."""
    level = rng.uniform(-0.62, -0.38)
    t0 = math.asin(max(-1.0, min(1.0, level)))  # angle where the oval reaches v = level (v = sin t)
    ts = np.linspace(math.pi - t0, 2 * math.pi + t0, 16)  # upper arc, left to right
    u, v = list(1.04 * np.cos(ts)), list(1.04 * np.sin(ts))  # a little beyond the oval: covers its outline
    k = int(rng.integers(3, 7))
    edge_u = np.linspace(u[-1], u[0], 2 * k + 1)[1:-1]
    edge_v = level + np.where(np.arange(2 * k - 1) % 2 == 0, rng.uniform(0.06, 0.16), 0.0)
    if rng.random() < 0.4:  # side parting: one side lower
        edge_v = edge_v + np.linspace(0.12, -0.05, len(edge_v)) * rng.choice([-1, 1])
    draw.polygon(face.to_image(u + list(edge_u), v + list(edge_v)), fill=colour)


def _draw_hat(draw, rng, face: _Face) -> None:
    colour = _random_colour(rng)
    brim = rng.uniform(-0.72, -0.55)
    draw.polygon(face.to_image([-1.35, 1.35, 1.35, -1.35], [brim - 0.1, brim - 0.1, brim + 0.05, brim + 0.05]),
                 fill=colour)
    top = rng.uniform(-1.7, -1.3)
    draw.polygon(face.to_image([-0.9, 0.9, 0.8, -0.8], [brim, brim, top, top]), fill=colour)


def _draw_features(draw, rng, face: _Face, skin: RGB, hair: RGB) -> None:
    """Eyes, brows, nose, mouth and sometimes cheeks, shifted sideways a little for a turned head."""
    yaw = rng.uniform(-0.14, 0.14)
    ex, ey = rng.uniform(0.30, 0.42), rng.uniform(-0.20, -0.04)
    erx, ery = rng.uniform(0.13, 0.2), rng.uniform(0.07, 0.11)
    dark = _jitter((25, 20, 18), rng, 10)
    line_w = max(1, int(round(face.b * 0.045)))
    # cheeks
    if rng.random() < 0.3:
        blush = _mix(skin, (230, 80, 90), rng.uniform(0.2, 0.4))
        for sx in (-1, 1):
            _fill_ellipse(draw, *face.point(yaw + sx * 0.5, 0.22), face.a * 0.16, face.b * 0.09, face.theta, blush)
    # eyes
    eye_style = rng.random()
    iris = _jitter(IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], rng, 10)
    look = rng.uniform(-0.4, 0.4)
    for sx in (-1, 1):
        px, py = face.point(yaw + sx * ex * (1 - sx * yaw), ey)
        rx, ry = face.a * erx, face.b * ery
        if eye_style < 0.62:  # open: sclera, iris, pupil
            _fill_ellipse(draw, px, py, rx, ry, face.theta, _jitter((245, 243, 238), rng, 8))
            ix, iy = px + look * rx * 0.4 * math.cos(face.theta), py + look * rx * 0.4 * math.sin(face.theta)
            _fill_ellipse(draw, ix, iy, ry * 0.95, ry * 0.95, 0.0, iris)
            _fill_ellipse(draw, ix, iy, ry * 0.45, ry * 0.45, 0.0, dark)
        elif eye_style < 0.80:  # cartoon dots
            _fill_ellipse(draw, px, py, ry * 0.9, ry * 1.1, face.theta, dark)
        elif eye_style < 0.92:  # closed: an arc
            us = np.linspace(-1, 1, 7)
            pts = face.to_image(yaw + sx * ex + us * erx, ey + 0.4 * ery * (1 - us ** 2) * rng.choice([-1, 1]))
            draw.line(pts, fill=dark, width=line_w)
        else:  # sunglasses
            _fill_ellipse(draw, px, py, rx * 1.25, ry * 1.6, face.theta, _jitter((20, 20, 25), rng, 15))
            if sx == 1:
                draw.line([face.point(yaw - ex + erx, ey), face.point(yaw + ex - erx, ey)], fill=dark, width=line_w)
    # brows
    if rng.random() < 0.85:
        brow = _mix(hair, (0, 0, 0), 0.35)
        by = ey - ery - rng.uniform(0.08, 0.16)
        tilt = rng.uniform(-0.08, 0.08)
        bw = max(1, int(round(face.b * rng.uniform(0.03, 0.07))))
        for sx in (-1, 1):
            cxu = yaw + sx * ex
            draw.line(face.to_image([cxu - erx * 1.1, cxu, cxu + erx * 1.1],
                                    [by + sx * tilt, by - 0.03, by - sx * tilt]), fill=brow, width=bw)
    # nose
    if rng.random() < 0.7:
        nose = _mix(skin, (0, 0, 0), rng.uniform(0.2, 0.35))
        ny = rng.uniform(0.12, 0.25)
        draw.line(face.to_image([yaw * 1.4, yaw * 1.4 + 0.06, yaw * 1.4 - 0.07], [ny - 0.12, ny, ny + 0.02]),
                  fill=nose, width=max(1, line_w - 1))
    # mouth
    lip = _jitter(LIP_COLOURS[int(rng.integers(len(LIP_COLOURS)))], rng, 12)
    my, mw = rng.uniform(0.42, 0.58), rng.uniform(0.2, 0.38)
    style = rng.random()
    us = np.linspace(-1, 1, 9)
    if style < 0.45:  # smile / frown arc
        curve = rng.uniform(0.04, 0.14) * (1 if rng.random() < 0.85 else -1)
        draw.line(face.to_image(yaw + us * mw, my + curve * (1 - us ** 2)), fill=lip,
                  width=max(1, int(round(face.b * 0.05))))
    elif style < 0.7:  # open mouth, sometimes with teeth
        cx, cy = face.point(yaw, my + 0.03)
        _fill_ellipse(draw, cx, cy, face.a * mw * 0.8, face.b * rng.uniform(0.06, 0.13), face.theta,
                      _mix(lip, (0, 0, 0), 0.45))
        if rng.random() < 0.5:
            draw.polygon(face.to_image([yaw - mw * 0.5, yaw + mw * 0.5, yaw + mw * 0.45, yaw - mw * 0.45],
                                       [my - 0.02, my - 0.02, my + 0.02, my + 0.02]), fill=(240, 240, 232))
    else:  # closed lips
        top = my - rng.uniform(0.02, 0.05) * (1 - us ** 2)
        bottom = my + rng.uniform(0.04, 0.08) * (1 - us ** 2)
        draw.polygon(face.to_image(list(yaw + us * mw) + list(yaw + us[::-1] * mw), list(top) + list(bottom[::-1])),
                     fill=lip)


def _draw_face(draw: ImageDraw.ImageDraw, rng: np.random.Generator, face: _Face, skin: RGB) -> None:
    """Hair behind, the face oval, fringe or hat, then the features."""
    hair = _hair(rng)
    style, hat = face.hair, face.hat
    _draw_hair_back(draw, rng, face, style, hair)
    outline = _mix(skin, (0, 0, 0), rng.uniform(0.25, 0.5)) if rng.random() < 0.4 else None
    _fill_ellipse(draw, face.cx, face.cy, face.a, face.b, face.theta, skin, outline=outline,
                  width=max(1, int(round(face.b * 0.02))))
    if style != "none" and not hat and rng.random() < 0.75:
        _draw_fringe(draw, rng, face, hair)
    if hat:
        _draw_hat(draw, rng, face)
    _draw_features(draw, rng, face, skin, hair)


def _corner_box(face: _Face, u0: float, u1: float, v0: float, v1: float) -> tuple[float, float, float, float]:
    """The axis-aligned box of the face-frame rectangle ``[u0, u1] x [v0, v1]`` in the image."""
    pts = face.to_image([u0, u1, u1, u0], [v0, v0, v1, v1])
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _draw_blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> tuple:
    """A shape with a face's colours but no features: a skin oval (sometimes with hair behind it), a
    lumpy skin polygon, or the back of a head (hair oval over a skin neck). Returns its (unclipped)
    box, hair included."""
    scale = min(width, height) / 480
    a, b = _sample_face_size(rng, scale)
    fake = _Face(rng.uniform(0, width), rng.uniform(0, height), a * rng.uniform(0.8, 1.5), b, _sample_rotation(rng))
    skin = _skin(rng)
    kind = rng.random()
    if kind < 0.15:  # an oval with hair behind it, but no face
        style = ("short", "long", "puffy")[int(rng.integers(3))]
        _draw_hair_back(draw, rng, fake, style, _hair(rng))
        _fill_ellipse(draw, fake.cx, fake.cy, fake.a, fake.b, fake.theta, skin)
        return _Face(fake.cx, fake.cy, fake.a, fake.b, fake.theta, style).extent_box()
    elif kind < 0.27:  # the back of a head
        w = rng.uniform(0.3, 0.45)
        draw.polygon(fake.to_image([-w, w, w, -w], [0.5, 0.5, 1.55, 1.55]), fill=skin)
        _fill_ellipse(draw, fake.cx, fake.cy, fake.a * 1.08, fake.b * 1.02, fake.theta, _hair(rng))
        return _corner_box(fake, -1.08, 1.08, -1.02, 1.55)
    elif kind < 0.65:
        _fill_ellipse(draw, fake.cx, fake.cy, fake.a, fake.b, fake.theta, skin)
        return fake.raw_box()
    else:
        k = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = rng.uniform(0.6, 1.2, k)
        pts = fake.to_image(rad * np.cos(ang), rad * np.sin(ang))
        draw.polygon(pts, fill=skin)
        return min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)


_SMOOTH = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 4, 2, 1, 2, 1])


def _finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Usually soften edges; change exposure a little; add sensor-like noise (PIL ops: ~3 ms)."""
    if rng.random() < 0.7:
        img = img.filter(_SMOOTH)
    gain, offset = rng.uniform(0.86, 1.12), rng.uniform(-12, 12)
    img = img.point([min(255, max(0, int(v * gain + offset))) for v in range(256)] * 3)
    amp = int(rng.integers(1, 9))
    w, h = img.size
    noise = Image.frombytes("L", (w, h), rng.bytes(w * h)).point([v % (2 * amp + 1) for v in range(256)])
    return ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), 1.0, -amp)


def render_scene(seed: int, index: int, size: tuple[int, int] = DEFAULT_SIZE,
                 distractors: bool = False) -> tuple[Image.Image, list[Box]] | tuple[Image.Image, list[Box], list[Box]]:
    """Draw scene ``index`` (1-based) of data set ``seed``; returns the RGB image and its boxes (XYXY ints),
    and with ``distractors=True`` also the boxes of its face-like distractors (clipped to the image;
    those entirely outside it left out; a distractor may be partly hidden by a face drawn later).

    A pure function of ``(seed, index, size)``: this is what :func:`generate` writes as
    ``image_{index:06d}.jpg``, before JPEG compression.
    """
    height, width = _check_size(size)
    rng = np.random.default_rng([_check_int("seed", seed, 0), _check_int("index", index, 1)])
    img = _background(rng, width, height)
    draw = ImageDraw.Draw(img)
    _clutter(draw, rng, width, height)
    faces = _place_faces(rng, width, height)
    skins = [_skin(rng) for _ in faces]
    n_blobs, n_eyes = int(rng.integers(0, 3)), int(rng.integers(0, 4))
    fakes = [_draw_blob(draw, rng, width, height) for _ in range(n_blobs)]
    fakes += [_eye_pair(draw, rng, width, height) for _ in range(n_eyes)]
    for face, skin in zip(faces, skins):
        if rng.random() < 0.55:
            _draw_body(draw, rng, face, skin)
    for face, skin in zip(faces, skins):
        _draw_face(draw, rng, face, skin)
    boxes = [_clip_box(f.raw_box(), width, height) for f in faces]
    for box in boxes:  # guaranteed by _face_fits; checked so that a broken change cannot write bad labels
        if not (box[2] > box[0] and box[3] > box[1]):
            raise RuntimeError(f"scene {index} of seed {seed}: degenerate box {box}")
    img = _finish(img, rng)
    if not distractors:
        return img, boxes
    clipped = [_clip_box(raw, width, height) for raw in fakes]
    return img, boxes, [b for b in clipped if b[2] > b[0] and b[3] > b[1]]


# --------------------------------------------------------------------------------------------------
# Writing a data set
# --------------------------------------------------------------------------------------------------
def image_name(index: int) -> str:
    """File name of image ``index`` (1-based): ``image_000001.jpg``."""
    return f"image_{index:06d}.jpg"


def _check_int(what: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{what} must be >= {minimum}{hi}, got {value}")
    return int(value)


def _check_size(size) -> tuple[int, int]:
    """``size`` as ``(height, width)`` ints, each at least 16."""
    try:
        height, width = size
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    return _check_int("size height", height, 16), _check_int("size width", width, 16)


def _render_task(task: tuple) -> tuple[str, list[Box], list[Box]]:
    """Worker: draw one scene, write its JPEG, return only its name, boxes and distractor boxes
    (top-level for spawn)."""
    out_dir, seed, index, size, quality = task
    img, boxes, fakes = render_scene(seed, index, size, distractors=True)
    name = image_name(index)
    img.save(os.path.join(out_dir, name), format="JPEG", quality=quality)
    return name, boxes, fakes


def _distractor_task(task: tuple) -> tuple[str, list[Box]]:
    """Worker: draw one scene only to learn its distractor boxes (nothing written)."""
    seed, index, size = task
    return image_name(index), render_scene(seed, index, size, distractors=True)[2]


def _map(fn, tasks, n: int, workers: int, desc: str, progress: bool):
    """``fn`` over ``tasks`` in ``workers`` processes (in order), with a progress bar of ``n`` steps."""
    from tqdm import tqdm

    workers = max(1, min(workers, n))
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, file=sys.stderr) as bar:
        if workers == 1:
            for item in map(fn, tasks):
                bar.update(1)
                yield item
        else:
            chunk = max(1, min(64, n // (workers * 8)))
            with multiprocessing.get_context().Pool(workers) as pool:
                for item in pool.imap(fn, tasks, chunksize=chunk):
                    bar.update(1)
                    yield item


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def bbox_json_text(boxes: dict[str, list[Box]]) -> str:
    """``bbox.json`` text: keys sorted, one image per line, boxes as lists of 4 ints."""
    lines = [f"  {json.dumps(name)}: {json.dumps([[int(v) for v in b] for b in boxes[name]])}"
             for name in sorted(boxes)]
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"


def _params(n: int, seed: int, size: tuple[int, int], quality: int) -> dict:
    return {"generator": "helpers.synth", "version": GENERATOR_VERSION, "n": n, "seed": seed,
            "size": list(size), "quality": quality}


def generate(out_dir: str | Path, n: int, seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
             workers: int | None = None, progress: bool = True, quality: int = DEFAULT_QUALITY) -> Path:
    """Write ``n`` scenes ``image_000001.jpg`` ... and ``bbox.json`` into ``out_dir``; returns bbox.json's path.

    ``size`` is (height, width). ``workers`` processes draw and write the JPEGs in parallel (default
    ``os.cpu_count()``; 1 = in this process); only the boxes come back, so memory stays flat for any
    ``n``. Existing ``bbox.json``/``synth.json`` are removed first and images ``image_NNNNNN.jpg`` beyond
    ``n`` are deleted, so the folder always describes exactly this run; other files are left alone.
    ``distractors.json`` (:data:`DISTRACTORS_FILE`) is written just before ``bbox.json``.
    """
    n = _check_int("n", n, 0, MAX_IMAGES)
    seed = _check_int("seed", seed, 0)
    size = _check_size(size)
    quality = _check_int("quality", quality, 1, 95)
    workers = _check_int("workers", (os.cpu_count() or 1) if workers is None else workers, 1)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / BBOX_FILE, out / META_FILE, out / DISTRACTORS_FILE):
        stale.unlink(missing_ok=True)  # until both are rewritten, the folder reads as incomplete
    for p in out.iterdir():
        m = _NAME_RE.match(p.name)
        if m and int(m.group(1)) > n:
            p.unlink()

    tasks = ((str(out), seed, i, size, quality) for i in range(1, n + 1))
    boxes: dict[str, list[Box]] = {}
    fakes: dict[str, list[Box]] = {}
    for name, b, f in _map(_render_task, tasks, n, workers, f"synth {out.name}", progress):
        boxes[name], fakes[name] = b, f
    _write_atomic(out / META_FILE, json.dumps(_params(n, seed, size, quality), sort_keys=True) + "\n")
    _write_atomic(out / DISTRACTORS_FILE, bbox_json_text(fakes))
    bbox_path = out / BBOX_FILE
    _write_atomic(bbox_path, bbox_json_text(boxes))  # last: its presence marks a complete folder
    return bbox_path


def dataset_is_current(out_dir: str | Path, n: int, seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
                       quality: int = DEFAULT_QUALITY) -> bool:
    """True when ``out_dir`` holds a complete data set made by this generator version with these parameters."""
    out = Path(out_dir)
    try:
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        labels = json.loads((out / BBOX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta != _params(n, seed, tuple(size), quality) or not isinstance(labels, dict) or len(labels) != n:
        return False
    return all(name in labels and (out / name).is_file() for name in map(image_name, range(1, n + 1)))


def ensure_dataset(out_dir: str | Path, n: int, seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
                   workers: int | None = None, progress: bool = True, quality: int = DEFAULT_QUALITY) -> Path:
    """The path of ``out_dir/bbox.json``, generating the data set only if it is missing, incomplete or
    was made with other parameters (or another :data:`GENERATOR_VERSION`). A current folder that lacks
    ``distractors.json`` (generated before it existed) gets it added by :func:`write_distractors`, its
    images untouched.

    A folder holding a ``bbox.json`` but no ``synth.json`` was not written by this generator (which
    writes ``synth.json`` before ``bbox.json``): it is someone's own data (``$FACES_DATA``,
    ``helpers.convert``) and is returned as it is, never overwritten."""
    n = _check_int("n", n, 0, MAX_IMAGES)
    size = _check_size(size)
    if (Path(out_dir) / BBOX_FILE).is_file() and not (Path(out_dir) / META_FILE).exists():
        return Path(out_dir) / BBOX_FILE
    if dataset_is_current(out_dir, n, seed, size, quality):
        if not _distractors_complete(Path(out_dir), n):  # made before distractors.json existed
            write_distractors(out_dir, n, seed, size, workers=workers, progress=progress)
        return Path(out_dir) / BBOX_FILE
    return generate(out_dir, n, seed=seed, size=size, workers=workers, progress=progress, quality=quality)


def _distractors_complete(out: Path, n: int) -> bool:
    try:
        fakes = json.loads((out / DISTRACTORS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(fakes, dict) and set(fakes) == set(map(image_name, range(1, n + 1)))


def write_distractors(out_dir: str | Path, n: int, seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
                      workers: int | None = None, progress: bool = True) -> Path:
    """Write ``distractors.json`` for a data set generated with these parameters, drawing every scene
    again (in memory; the scenes are pure functions of their parameters, so the boxes are those of the
    images on disk) and writing no image. Returns the file's path."""
    n = _check_int("n", n, 0, MAX_IMAGES)
    size = _check_size(size)
    workers = _check_int("workers", (os.cpu_count() or 1) if workers is None else workers, 1)
    out = Path(out_dir)
    tasks = ((seed, i, size) for i in range(1, n + 1))
    fakes = dict(_map(_distractor_task, tasks, n, workers, f"distractors {out.name}", progress))
    path = out / DISTRACTORS_FILE
    _write_atomic(path, bbox_json_text(fakes))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate a data set and print where its bbox.json is."""
    p = argparse.ArgumentParser(prog="python -m helpers.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--n", required=True, type=int, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=list(DEFAULT_SIZE),
                   help="image height and width (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help=f"JPEG quality (default {DEFAULT_QUALITY})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        path = generate(args.out, args.n, seed=args.seed, size=tuple(args.size), workers=args.workers,
                        progress=not args.quiet, quality=args.quality)
    except ValueError as e:
        p.error(str(e))
    labels = json.loads(path.read_text(encoding="utf-8"))
    print(f"wrote {len(labels)} images with {sum(map(len, labels.values()))} faces; labels in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
