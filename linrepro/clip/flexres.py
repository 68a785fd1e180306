"""Mixed-resolution training: each step's images at a resolution drawn from a set, with the
vision tower's positional embedding resampled to that step's patch grid (as FlexiViT does).

The model is built at the largest resolution of the set (its positional embedding holds that
grid, and the training data are rendered at that size). At each training step:

* the resolution is drawn from the set by a generator seeded with ``(seed, step)``, so every
  DDP rank draws the same one in the same step with no communication, and a resumed run draws
  what it would have drawn;
* the batch is resized to that side (bilinear with antialiasing, as when a picture is rendered
  with fewer pixels) by a forward pre-hook on the image tower;
* the positional embedding is resampled to the step's grid inside the forward
  (bicubic with antialiasing, exactly open_clip's ``resize_pos_embed``), so its gradient reaches
  the stored grid.

In evaluation (``model.eval()``) nothing is resized: a trained model is evaluated at any side by
building it at that side and loading its weights with open_clip's ``resize_pos_embed``, which
computes the same interpolation.

:mod:`linrepro.clip.train` tells this module the step through the learning-rate scheduler that
open_clip_train calls once per optimiser step (``--skip-scheduler`` is refused with mixed
resolutions for that reason).
"""

from __future__ import annotations

import math
import numbers
import operator
import re
import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F

_state: dict = {"step": None, "history": []}


def _side(r) -> int:
    """One side as an int, or a ValueError naming it. Accepted: an int (or any integer type, e.g.
    numpy's, but not a bool), a real number with no fractional part (``32.0``), a string of an integer
    (``"32"``, as the command line gives). Refused: a fractional float (``24.5``), any other string
    (``"24.5"``, ``"32.0"``, ``"abc"``), a bool, anything else. Nothing is truncated."""
    bad = ValueError(f"mixed resolutions must be integers; {r!r} is not")
    if isinstance(r, bool):
        raise bad
    if isinstance(r, str):
        t = r.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", t):
            raise bad
        return int(t)
    try:
        return operator.index(r)
    except TypeError:
        pass
    if isinstance(r, numbers.Real) and math.isfinite(r) and float(r).is_integer():
        return int(r)
    raise bad


def check_resolutions(resolutions, patch: int | None = None) -> tuple[int, ...]:
    """The set as a sorted tuple of distinct sides; each a positive integer (a multiple of the
    ``patch`` size when given). A bad value is named.

    ``resolutions`` is a string (``"16,32"`` or ``"16 32"``) or an iterable of sides. A side is an
    int, a float with no fractional part (``32.0`` is 32) or a string of an integer (``"32"``);
    anything else (``24.5``, ``"24.5"``, ``True``, ``"abc"``) is refused, never truncated."""
    if isinstance(resolutions, str):
        resolutions = [r for r in resolutions.replace(",", " ").split() if r]
    try:
        values = list(resolutions)
    except TypeError:
        raise ValueError(f"mixed resolutions must be a set of integers, got {resolutions!r}") from None
    try:
        out = tuple(sorted({_side(r) for r in values}))
    except ValueError as e:
        raise ValueError(f"{e} (from {resolutions!r})") from None
    if len(out) < 2:
        raise ValueError(f"mixed resolutions need at least two distinct sides, got {resolutions!r}")
    bad = [r for r in out if r < 1 or (patch and r % patch)]
    if bad:
        what = f"positive multiples of the patch size {patch}" if patch else "positive"
        raise ValueError(f"mixed resolutions must be {what}; {bad} are not (from {resolutions!r})")
    return out


def resolution_at(step: int, resolutions: Sequence[int], seed: int) -> int:
    """The side drawn for optimiser ``step``: uniform over ``resolutions``, seeded by
    ``(seed, step)`` only (so equal on every rank, and after a resume)."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
    return int(resolutions[int(torch.randint(len(resolutions), (1,), generator=g))])


def on_step(step: int) -> None:
    """Called by the training loop's scheduler hook before each optimiser step."""
    _state["step"] = int(step)


def history() -> list[tuple[int, int]]:
    """``(step, side)`` of every training forward of this process since :func:`install`."""
    return list(_state["history"])


def current() -> int | None:
    """The side of the latest training forward (None before the first)."""
    return _state["history"][-1][1] if _state["history"] else None


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A ``(1 + g*g, width)`` positional embedding (class token first) resampled to ``grid``,
    the same interpolation as open_clip's ``resize_pos_embed`` (bicubic, antialiased), and
    differentiable."""
    tok, img = pos[:1], pos[1:]
    old = int(math.isqrt(img.shape[0]))
    if (old, old) == tuple(grid):
        return pos
    img = img.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=tuple(grid), mode="bicubic", antialias=True, align_corners=False)
    img = img.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
    return torch.cat([tok, img], dim=0)


def _flexible_embeds(self, x: torch.Tensor) -> torch.Tensor:
    """open_clip's ``VisionTransformer._embeds`` with the positional embedding resampled to the
    input's patch grid (the stored grid when they match)."""
    from open_clip.transformer import _expand_token

    x = self.conv1(x)
    grid = (x.shape[-2], x.shape[-1])
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([_expand_token(self.class_embedding, x.shape[0]).to(x.dtype), x], dim=1)
    x = x + resample_pos_embed(self.positional_embedding, grid).to(x.dtype)
    x = self.patch_dropout(x)
    return self.ln_pre(x)


def install(model, resolutions: Sequence[int], seed: int) -> None:
    """Make ``model``'s image tower train at a side drawn per step from ``resolutions`` (see the
    module docstring). The model must have been built at the largest side."""
    visual = model.visual
    if not hasattr(visual, "_embeds") or not hasattr(visual, "conv1"):
        raise ValueError(f"mixed resolutions need open_clip's VisionTransformer, got {type(visual).__name__}")
    patch = int(visual.conv1.kernel_size[0])
    res = check_resolutions(resolutions, patch)
    built = int(visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size)
    if built != res[-1]:
        raise ValueError(
            f"a mixed-resolution model is built at the largest side {res[-1]} (--force-image-size {res[-1]}), "
            f"this one at {built}"
        )
    _state["step"], _state["history"] = None, []
    visual._embeds = types.MethodType(_flexible_embeds, visual)

    def pre_hook(module, args):
        if not module.training:
            return None
        step = _state["step"]
        if step is None:
            raise RuntimeError(
                "mixed-resolution training needs the step from open_clip_train's scheduler "
                "(it is not called with --skip-scheduler)"
            )
        side = resolution_at(step, res, seed)
        _state["history"].append((step, side))
        x = args[0]
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return (x, *args[1:])

    visual.register_forward_pre_hook(pre_hook)
    visual.mixed_resolutions = res
