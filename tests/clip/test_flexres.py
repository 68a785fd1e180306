"""linrepro.clip.flexres (mixed-resolution training) against independent references: open_clip's own
``resize_pos_embed``, the same weights built at the smaller side by open_clip, float64 finite
differences, and a resize Jacobian assembled from open_clip's resize of basis vectors."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from open_clip.model import resize_pos_embed

from linrepro import clip
from linrepro.clip import flexres

PATCH = 8  # tiny-XS: 32 px images in 8 px patches, a 4x4 grid
SIDES = (16, 32)


def _open_clip_resize(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """open_clip's ``resize_pos_embed`` (what it does when loading a state dict into a model whose
    grid is ``grid`` x ``grid``)."""
    sd = {"visual.positional_embedding": pos}
    resize_pos_embed(sd, SimpleNamespace(visual=SimpleNamespace(grid_size=(grid, grid))))
    return sd["visual.positional_embedding"]


def _step_drawing(side: int, sides=SIDES, seed: int = 0) -> int:
    return next(t for t in range(1000) if flexres.resolution_at(t, sides, seed) == side)


def _shrink(x: torch.Tensor, side: int) -> torch.Tensor:
    """The batch as rendered with fewer pixels: bilinear with antialiasing."""
    return F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def built():
    """tiny-XS eq7 (s = 1/N) in float64, built at 32 px, and the same weights in a model open_clip
    built at 16 px (positional embedding resized by open_clip's resize_pos_embed on loading)."""
    torch.manual_seed(0)
    big, _, _ = clip.create_model("tiny-XS", "eq7", score_scale="1/N")
    small, _, _ = clip.create_model("tiny-XS", "eq7", score_scale="1/N", force_image_size=16)
    big.double()
    with torch.no_grad():  # a trained-looking positional embedding (open_clip's init is tiny noise)
        big.visual.positional_embedding.normal_()
    sd = {k: v.clone() for k, v in big.state_dict().items()}
    resize_pos_embed(sd, small)
    small.double().load_state_dict(sd)
    assert small.visual.positional_embedding.shape == (1 + 2 * 2, 32)
    return big, small


@pytest.fixture
def flex(built):
    """A fresh copy of the 32 px model with flexres installed for sides 16 and 32."""
    model = copy.deepcopy(built[0])
    flexres.install(model, SIDES, seed=0)
    return model


# ------------------------------------------------------------------ the positional embedding
@pytest.mark.parametrize("new", [2, 3, 4, 6])
def test_resample_pos_embed_equals_open_clips_resize(new):
    torch.manual_seed(1)
    pos = torch.randn(1 + 4 * 4, 24, dtype=torch.float64)
    ours = flexres.resample_pos_embed(pos, (new, new))
    ref = _open_clip_resize(pos.clone(), new)
    assert ours.shape == ref.shape == (1 + new * new, 24)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12)
    assert torch.equal(ours[0], pos[0])  # the class token's embedding is not resampled


def test_resample_pos_embed_same_grid_returns_the_input():
    pos = torch.randn(1 + 4 * 4, 24)
    assert flexres.resample_pos_embed(pos, (4, 4)) is pos


def test_resample_pos_embed_gradient_matches_finite_differences():
    torch.manual_seed(2)
    pos = torch.randn(1 + 4 * 4, 3, dtype=torch.float64, requires_grad=True)
    for grid in ((2, 2), (3, 3)):
        assert torch.autograd.gradcheck(lambda p, g=grid: flexres.resample_pos_embed(p, g), (pos,))


def test_gradient_reaches_the_stored_embedding_through_a_smaller_side(built, flex):
    """A training step at 16 px moves the stored 4x4 grid: its gradient equals Aᵀ g, where g is the
    gradient of the same loss on the 2x2 embedding of the model open_clip built at 16 px and A the
    4x4 -> 2x2 resize, assembled column by column from open_clip's resize of basis vectors."""
    _, small = built
    torch.manual_seed(3)
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    w = torch.randn(3, 32, dtype=torch.float64)
    flexres.on_step(_step_drawing(16))
    flex.train()
    (flex.encode_image(x) * w).sum().backward()
    assert flexres.history()[-1][1] == 16
    got = flex.visual.positional_embedding.grad
    assert got is not None and got.shape == (17, 32) and got[1:].abs().sum() > 0

    small = copy.deepcopy(small)
    (small.encode_image(_shrink(x, 16)) * w).sum().backward()
    g = small.visual.positional_embedding.grad  # (1 + 4, 32)
    basis = torch.eye(16, dtype=torch.float64)
    a = torch.stack(
        [
            _open_clip_resize(torch.cat([torch.zeros(1, 1, dtype=torch.float64), basis[:, j : j + 1]]), 2)[1:, 0]
            for j in range(16)
        ],
        dim=1,
    )  # (4, 16): resized grid = A @ stored grid, per channel
    want = torch.cat([g[:1], a.T @ g[1:]])
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ the training hook
def test_train_mode_runs_a_32px_batch_at_the_drawn_side(built, flex):
    """Image features equal those of the model built at the drawn side (weights loaded with open_clip's
    resize_pos_embed) on the batch resized to that side; at the largest side, those of the model
    without flexres. flexres.history() records (step, side) of each training forward."""
    big, small = built
    torch.manual_seed(4)
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    s16, s32 = _step_drawing(16), _step_drawing(32)
    flex.train()
    with torch.no_grad():
        flexres.on_step(s16)
        f16 = flex.encode_image(x)
        flexres.on_step(s32)
        f32 = flex.encode_image(x)
        ref16 = small.encode_image(_shrink(x, 16))
        ref32 = big.encode_image(x)
    assert flexres.history() == [(s16, 16), (s32, 32)]
    assert flexres.current() == 32
    assert torch.allclose(f16, ref16, rtol=1e-10, atol=1e-12)
    assert torch.allclose(f32, ref32, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(f16, f32, atol=1e-6)  # the two sides do differ


def test_eval_mode_resizes_nothing(built, flex):
    """In eval() the batch keeps its side (no draw, no history, no step needed): a 32 px batch gives
    the features of the model without flexres, and a 16 px batch those of the model open_clip built
    at 16 px (what the module docstring promises for evaluating at another side)."""
    big, small = built
    torch.manual_seed(5)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    y = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    flex.eval()
    with torch.no_grad():
        assert torch.allclose(flex.encode_image(x), big.encode_image(x), rtol=1e-10, atol=1e-12)
        flexres.on_step(_step_drawing(16))  # a step that would draw 16 in training
        assert torch.allclose(flex.encode_image(x), big.encode_image(x), rtol=1e-10, atol=1e-12)
        assert torch.allclose(flex.encode_image(y), small.encode_image(y), rtol=1e-10, atol=1e-12)
    assert flexres.history() == [] and flexres.current() is None


def test_training_forward_without_a_step_is_a_clear_error(flex):
    """No scheduler call (--skip-scheduler) means no step to draw on: the hook says so."""
    flex.train()
    with pytest.raises(RuntimeError, match="scheduler"):
        flex.encode_image(torch.rand(1, 3, 32, 32, dtype=torch.float64))


def test_install_refuses_a_model_not_built_at_the_largest_side(built):
    big, small = built
    with pytest.raises(ValueError, match=r"largest side 48.*at 32"):
        flexres.install(copy.deepcopy(big), (16, 48), seed=0)
    with pytest.raises(ValueError, match=r"largest side 32.*at 16"):
        flexres.install(copy.deepcopy(small), (16, 32), seed=0)
    with pytest.raises(ValueError, match=r"patch size 8.*\[12\]"):
        flexres.install(copy.deepcopy(big), (12, 32), seed=0)


# ------------------------------------------------------------------ the draw and the set
def test_resolution_at_is_deterministic_uses_every_side_and_depends_on_the_seed():
    sides = (16, 24, 32)
    draws = [flexres.resolution_at(t, sides, seed=0) for t in range(600)]
    assert draws == [flexres.resolution_at(t, sides, seed=0) for t in range(600)]
    counts = {s: draws.count(s) for s in sides}
    assert set(draws) == set(sides) and all(140 <= c <= 260 for c in counts.values()), counts  # ~uniform
    other = [flexres.resolution_at(t, sides, seed=1) for t in range(600)]
    assert other != draws
    assert sum(a == b for a, b in zip(draws, other)) < 300  # not a near copy (chance: 1/3 agree)
    assert flexres.resolution_at(10**9, sides, seed=2**40) in sides  # large steps and seeds


@pytest.mark.parametrize(
    "value,patch,bad",
    [
        ("16,20", 8, "20"),
        ([12, 32], 8, "12"),
        ("0,16", None, "0"),
        ("16,abc", None, "abc"),
        ("16", None, "16"),
        ([32, 32], 8, "32"),
    ],
)
def test_check_resolutions_errors_name_the_bad_value(value, patch, bad):
    with pytest.raises(ValueError) as e:
        flexres.check_resolutions(value, patch)
    assert bad in str(e.value), str(e.value)


def test_check_resolutions_sorts_and_dedupes():
    assert flexres.check_resolutions("32, 16,16 24", 8) == (16, 24, 32)
    assert flexres.check_resolutions([48, 32]) == (32, 48)


@pytest.mark.parametrize(
    "value,bad",
    [
        ([24.5, 32], r"24\.5"),
        ("24.5,32", r"'24\.5'"),
        (["24.5", "32"], r"'24\.5'"),
        ([16, 32.0001], r"32\.0001"),
        ([True, 32], r"True"),
        (["32.0", 16], r"'32\.0'"),
        ([16, None], r"None"),
    ],
)
def test_check_resolutions_refuses_a_non_integer_side(value, bad):
    """A side that is not an integer is refused and named, never truncated (24.5 is not 24)."""
    with pytest.raises(ValueError, match=bad):
        flexres.check_resolutions(value, 8)


def test_check_resolutions_refuses_a_fractional_side():
    with pytest.raises(ValueError, match=r"24\.5"):
        flexres.check_resolutions([24.5, 32], 8)


def test_check_resolutions_accepts_integral_values():
    """ints, integer strings (the command line's) and floats with no fractional part are sides."""
    assert flexres.check_resolutions([32.0, 16], 8) == (16, 32)
    assert flexres.check_resolutions(["32", " 16 "], 8) == (16, 32)
    np = pytest.importorskip("numpy")
    assert flexres.check_resolutions((np.int64(16), np.float32(32.0))) == (16, 32)
