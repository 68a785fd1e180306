"""Tests for linrepro.data: the bundled mixed-domain image-caption dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from linrepro import data as D

RESOLUTIONS = (32, 64)


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


# ---------------------------------------------------------------- specs


def test_domains_and_specs():
    assert set(D.DEFAULT_DOMAINS) <= set(D.DOMAINS)
    assert D.DEFAULT_DOMAINS == ("digits", "shapes", "glyphs")
    for name in D.DOMAINS:
        spec = D.domain_spec(name)
        assert spec.name == name
        assert len(spec.classnames) >= 8
        assert len(set(spec.classnames)) == len(spec.classnames), f"{name}: duplicate class names"
        assert len(spec.templates) >= 3
        for t in spec.templates:
            assert t.count("{}") == 1, t
        fns = D.template_fns(name)
        assert [f("X") for f in fns] == [t.format("X") for t in spec.templates]
    # the three default domains do not share class names, so a joint classifier is possible
    names = [c for d in D.DEFAULT_DOMAINS for c in D.domain_spec(d).classnames]
    assert len(set(names)) == len(names)


def test_digits_fast_path_matches_load_digits():
    from sklearn.datasets import load_digits

    images, target = D._digits_data()
    ref = load_digits()
    np.testing.assert_array_equal(target, ref.target)
    np.testing.assert_allclose(images, ref.images / 16.0, atol=1e-6)


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize("domain", D.DOMAINS)
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_render_deterministic(domain, res):
    a, la = D.render(domain, 5, res, seed=3)
    b, lb = D.render(domain, 5, res, seed=3)
    assert a.mode == "RGB" and a.size == (res, res)
    assert la == lb and 0 <= la < len(D.domain_spec(domain).classnames)
    assert a.tobytes() == b.tobytes()
    other, _ = D.render(domain, 6, res, seed=3)
    assert np.abs(_pixels(a) - _pixels(other)).mean() > 5
    reseeded, _ = D.render(domain, 5, res, seed=4)
    if D.domain_spec(domain).available is None:  # drawn domains: the seed changes the drawing
        assert np.abs(_pixels(a) - _pixels(reseeded)).mean() > 5
    else:  # scanned bitmaps (digits, mnist) are shown as they are: black ink on white, at any seed
        assert a.tobytes() == reseeded.tobytes()
    assert _pixels(a).std() > 10  # not a blank canvas


@pytest.mark.parametrize("domain", D.DOMAINS)
def test_same_content_across_resolutions(domain):
    for i in range(4):
        big, lbig = D.render(domain, i, 96)
        small, lsmall = D.render(domain, i, 32)
        assert lbig == lsmall
        down = big.resize((32, 32), Image.Resampling.BOX)
        assert np.abs(_pixels(down) - _pixels(small)).mean() < 3
        other, _ = D.render(domain, i + 1, 32)
        assert np.abs(_pixels(other) - _pixels(small)).mean() > 10


def test_procedural_labels_cover_all_classes():
    for domain in ("shapes", "glyphs"):
        n = len(D.domain_spec(domain).classnames)
        assert sorted(D.render(domain, i, 16)[1] for i in range(n)) == list(range(n))


# ---------------------------------------------------------------- splits and captions


def _keys(ds):
    return [ds.entry(i)[:2] for i in range(len(ds))]


def test_splits_disjoint_stable_and_complete():
    kw = dict(n_per_domain=150, seed=7, val_fraction=0.2)
    train = D.MixedDomainDataset(split="train", **kw)
    val = D.MixedDomainDataset(split="val", **kw)
    assert len(train) + len(val) == 3 * 150
    tk, vk = _keys(train), _keys(val)
    assert not set(tk) & set(vk)
    assert len(set(tk)) == len(tk) and len(set(vk)) == len(vk)
    assert _keys(D.MixedDomainDataset(split="val", **kw)) == vk
    assert 0.15 * 450 <= len(val) <= 0.25 * 450
    for domain in D.DEFAULT_DOMAINS:  # stratified: every class is in val
        labels = {val.entry(i)[2] for i in range(len(val)) if val.entry(i)[0] == domain}
        assert labels == set(range(len(D.domain_spec(domain).classnames)))
    other = D.MixedDomainDataset(split="val", n_per_domain=150, seed=8, val_fraction=0.2)
    assert _keys(other) != vk
    # a full domain's pool is all of its images
    full = [D.MixedDomainDataset("digits", split=s) for s in ("train", "val")]
    assert sum(map(len, full)) == 1797


def test_items_and_captions():
    ds = D.MixedDomainDataset(split="val", resolution=32, n_per_domain=40, seed=1)
    seen_templates = set()
    for i in range(len(ds)):
        image, caption, domain, label = ds[i]
        spec = D.domain_spec(domain)
        assert isinstance(image, Image.Image) and image.size == (32, 32)
        name = spec.classnames[label]
        assert re.search(rf"\b{re.escape(name)}\b", caption), (caption, name)
        assert caption in spec.captions(label)
        assert caption == ds.caption(i)
        assert label == ds.entry(i)[2] == D.render(domain, ds.entry(i)[1], 8, seed=1)[1]
        seen_templates.add(re.sub(rf"\b{re.escape(name)}\b", "{}", caption))
    assert len(seen_templates) > 6  # templates are sampled, not fixed
    again = D.MixedDomainDataset(split="val", resolution=32, n_per_domain=40, seed=1)
    assert [again.caption(i) for i in range(len(again))] == [ds.caption(i) for i in range(len(ds))]


def test_transform_and_dataloader():
    import torch
    from torch.utils.data import DataLoader

    def to_tensor(img):
        return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255.0

    ds = D.MixedDomainDataset(split="val", resolution=24, n_per_domain=10, transform=to_tensor)
    batch = next(iter(DataLoader(ds, batch_size=6, shuffle=False)))
    assert batch.image.shape == (6, 3, 24, 24)
    assert len(batch.caption) == 6 and len(batch.domain) == 6
    assert batch.label.dtype == torch.int64


def test_n_per_domain_capped_for_finite_domains():
    with pytest.warns(UserWarning, match="1797"):
        ds = D.MixedDomainDataset("digits", n_per_domain=5000, val_fraction=0.5)
    assert 890 <= len(ds) <= 910


# ---------------------------------------------------------------- exports


def test_write_csv_readable_by_open_clip(tmp_path):
    import open_clip
    import torch
    from open_clip_train.data import CsvDataset

    csv_path, n = D.write_csv(tmp_path / "csv", split="val", resolution=32, n_per_domain=20, progress=False)
    ds = D.MixedDomainDataset(split="val", resolution=32, n_per_domain=20)
    assert csv_path == (tmp_path / "csv" / "val.csv") and n == len(ds)
    assert not list((tmp_path / "csv").rglob("*.tmp"))
    header = csv_path.read_text().splitlines()[0].split("\t")
    assert header[:2] == ["filepath", "title"]

    def transform(img):
        return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)

    cds = CsvDataset(
        str(csv_path),
        transform,
        img_key="filepath",
        caption_key="title",
        sep="\t",
        tokenizer=open_clip.get_tokenizer("ViT-B-16"),
    )
    assert len(cds) == n
    image, tokens = cds[3]
    assert image.shape == (3, 32, 32)
    assert tokens.ndim == 1 and int(tokens.count_nonzero()) > 3
    assert cds.captions == [ds.caption(i) for i in range(n)]
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), _pixels(ds[3].image))


def test_write_csv_relative_paths(tmp_path):
    csv_path, n = D.write_csv(
        tmp_path, domains="shapes", split="val", resolution=16, n_per_domain=10, relative_paths=True, progress=False
    )
    rows = [line.split("\t") for line in csv_path.read_text().splitlines()[1:]]
    assert len(rows) == n
    for fp, title, domain, label in rows:
        assert not Path(fp).is_absolute() and (tmp_path / fp).is_file()
        assert domain == "shapes" and D.domain_spec("shapes").classnames[int(label)] in title


def test_failed_csv_export_leaves_no_csv(tmp_path, monkeypatch):
    real = D.render
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(D, "render", flaky)
    with pytest.raises(RuntimeError):
        D.write_csv(tmp_path, split="val", resolution=16, n_per_domain=10, progress=False)
    assert not (tmp_path / "val.csv").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_webdataset_readable(tmp_path):
    import webdataset as wds

    out = tmp_path / "wds"
    pattern, n = D.write_webdataset(out, split="val", resolution=32, n_per_domain=30, shard_size=7, progress=False)
    expected = len(D.MixedDomainDataset(split="val", n_per_domain=30))
    n_shards = -(-expected // 7)
    assert n == expected
    assert pattern == str(out.absolute() / f"val-{{000000..{n_shards - 1:06d}}}.tar")
    assert len(list(out.glob("val-*.tar"))) == n_shards
    assert not list(out.glob("*.tmp"))
    manifest = json.loads((out / "val-manifest.json").read_text())
    assert manifest["pattern"] == pattern and manifest["count"] == n

    samples = list(wds.WebDataset(pattern, shardshuffle=False).decode("pil"))
    assert len(samples) == n
    keys = {s["__key__"] for s in samples}
    assert len(keys) == n
    first = samples[0]
    meta = first["json"]
    assert first["png"].size == (32, 32)
    assert first["txt"] == meta["caption"]
    assert first["__key__"] == f"{meta['domain']}_{meta['index']:06d}"
    assert D.domain_spec(meta["domain"]).classnames[meta["label"]] in first["txt"]
    ref, _ = D.render(meta["domain"], meta["index"], 32)
    np.testing.assert_array_equal(_pixels(first["png"].convert("RGB")), _pixels(ref))
    assert {s["json"]["domain"] for s in samples[:7]} == set(D.DEFAULT_DOMAINS)  # shards mix domains

    # a smaller re-export removes the stale shards of the larger one
    pattern2, n2 = D.write_webdataset(out, split="val", resolution=32, n_per_domain=30, shard_size=1000, progress=False)
    assert pattern2.endswith("val-{000000..000000}.tar") and n2 == n
    assert [p.name for p in out.glob("val-*.tar")] == ["val-000000.tar"]


def test_write_classnames(tmp_path):
    path = D.write_classnames(tmp_path)
    assert path == tmp_path / "classnames.json"
    payload = D.load_classnames(tmp_path)
    assert list(payload) == list(D.DOMAINS)
    for name, entry in payload.items():
        spec = D.domain_spec(name)
        assert entry == {"classnames": list(spec.classnames), "templates": list(spec.templates)}
    only = D.load_classnames(D.write_classnames(tmp_path / "x", domains=["glyphs"]))
    assert list(only) == ["glyphs"]


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        (dict(domains=("digits", "faces")), "'faces'"),
        (dict(domains="faces"), "'faces'"),
        (dict(domains=()), "empty"),
        (dict(domains=("shapes", "shapes")), "'shapes'"),
        (dict(resolution=4), "4"),
        (dict(resolution=7.5), "7.5"),
        (dict(split="test"), "'test'"),
        (dict(val_fraction=0.0), "0.0"),
        (dict(val_fraction=1), "1"),
        (dict(val_fraction=1.5), "1.5"),
        (dict(n_per_domain=0), "0"),
        (dict(seed=-1), "-1"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        D.MixedDomainDataset(**kwargs)


def test_bad_inputs_of_functions(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        D.domain_spec("nope")
    with pytest.raises(ValueError, match="got 3"):
        D.render("shapes", 0, resolution=3)
    with pytest.raises(ValueError, match="1797"):
        D.render("digits", 1797)
    with pytest.raises(ValueError, match="shard_size.*0"):
        D.write_webdataset(tmp_path, shard_size=0, progress=False)
    with pytest.raises(ValueError, match="'train2'"):
        D.write_csv(tmp_path, split="train2", progress=False)
    assert not list(tmp_path.iterdir())  # nothing written before validation failed


def test_n_per_domain_as_a_dict():
    full = D.MixedDomainDataset(("digits", "shapes"), "train", 16, n_per_domain={"shapes": 50})
    doms = [full.entry(i)[0] for i in range(len(full))]
    assert doms.count("shapes") == 40 and doms.count("digits") == len(D.MixedDomainDataset(("digits",), "train", 16))
    with pytest.raises(ValueError, match="unknown domain.*'cats'"):
        D.MixedDomainDataset(("digits",), n_per_domain={"cats": 5})
    with pytest.raises(ValueError, match=r"n_per_domain\['shapes'\].*-3"):
        D.MixedDomainDataset(("shapes",), n_per_domain={"shapes": -3})


def test_every_style_has_a_light_background():
    """Dark or random backgrounds made tiny CLIPs learn brightness instead of shape (see _colours)."""
    for dom in ("digits", "shapes", "glyphs"):
        for i in range(12):
            img, _ = D.render(dom, i, 32)
            corners = np.asarray(img, float)[[0, 0, -1, -1], [0, -1, 0, -1]] / 255
            assert corners.mean() > 0.75, (dom, i, corners)


def test_digits_are_the_plain_bitmap_black_on_white():
    """What the module docstring says of digits: the bitmap resized to fill the frame, black ink on
    white, with no jitter and no seeded colours (the same image for every seed)."""
    images, target = D._digits_data()
    for i in (0, 7, 1000):
        img, label = D.render("digits", i, 32, seed=0)
        assert label == int(target[i])
        px = np.asarray(img, np.int64)
        assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()  # grey: no colour
        for seed in (1, 12345):
            assert np.array_equal(px, np.asarray(D.render("digits", i, 32, seed=seed)[0], np.int64))
        mask = np.asarray(D._render_bitmap(images[i], 32), np.int64)
        assert np.abs(px[..., 0] - (255 - mask)).max() <= 1  # ink = the resized bitmap, on white


def test_progress_never_imports_the_run_layer(tmp_path, monkeypatch, capsys):
    """The dataset layer does not import linrepro.study.runs; inside a run (LINREPRO_RUN_DIR set) the bar
    is plain ASCII and goes to the run's progress.txt (the runner shows it in the terminal, never in
    the report), not to stderr; outside one it is tqdm.auto's."""
    import sys

    import tqdm.auto
    import tqdm.std

    monkeypatch.setitem(sys.modules, "linrepro.study.runs", None)  # any import of it now fails
    monkeypatch.setenv("LINREPRO_RUN_DIR", str(tmp_path / "run"))
    bar = D._progress(3, "x", True)
    assert type(bar) is tqdm.std.tqdm and bar.ascii and bar.mininterval == 2.0  # not tqdm.auto's
    bar.close()
    assert D._progress(3, "x", False).disable
    capsys.readouterr()
    (tmp_path / "run").mkdir()
    D.write_csv(tmp_path / "csv", domains="shapes", split="val", resolution=16, n_per_domain=10, progress=True)
    assert capsys.readouterr().err == ""  # nothing reaches the kernel's stderr, so nothing the report
    line = (tmp_path / "run" / "progress.txt").read_text()
    assert "csv val @16px" in line and "2/2" in line
    monkeypatch.delenv("LINREPRO_RUN_DIR")
    bar = D._progress(3, "x", True)
    assert type(bar) is tqdm.auto.tqdm and not bar.disable
    bar.close()
    assert D._progress(3, "x", False).disable
