"""Image↔text retrieval on held-out (image, caption) pairs: alignment beyond closed-set labels.

Each held-out image comes with its own caption. Image→text asks, for every image, whether its
caption is among the k captions most similar to it; text→image asks, for every caption, whether
its image is among the k most similar images. Recall@k is the fraction of queries with a hit.

What counts as a hit is given by ``groups``: pairs in one group are equivalent. The rendered
domains caption each image with one of several templates around its class name ("a blurry
handwritten 3.", "the digit 3, written by hand."): every caption of that class is a true
description of the image, as any of COCO's five captions of an image is, and nothing in the image
tells which template its own caption used. So linrepro's evaluation passes the class labels: a
retrieved caption is a hit when it describes the query image's class, a retrieved image when its
class is the one the query caption names. Without ``groups``, identical caption strings are
equivalent (never fewer hits than exact pair matching). Unlike zero-shot classification, each
caption is one sentence (not a class embedding averaged over templates) and text→image ranks the
images for a caption. The per-query hits are returned as 0/1 lists, so intervals over seeds and
queries can be drawn (:mod:`linrepro.study.stats`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def recall_at_k(
    image_emb, text_emb, captions: Sequence[str], ks: Sequence[int] = (1, 5), groups: Sequence | None = None
) -> dict:
    """R@k both ways from L2-normalised embeddings of paired images and captions (row i of each is
    pair i). ``groups`` (one per pair, e.g. class labels): a retrieved item is a hit when its group
    is the query's; default: when its caption is the same string. Returns ``i2t_r{k}``,
    ``t2i_r{k}``, and the per-query 0/1 hits ``i2t_hits`` / ``t2i_hits`` ({k: list}); ``n`` pairs."""
    img = torch.as_tensor(image_emb, dtype=torch.float64)
    txt = torch.as_tensor(text_emb, dtype=torch.float64)
    n = img.shape[0]
    if img.ndim != 2 or txt.shape != img.shape:
        raise ValueError(
            f"need (n, d) image and text embeddings of one shape; got {tuple(img.shape)} and {tuple(txt.shape)}"
        )
    if len(captions) != n:
        raise ValueError(f"{len(captions)} captions for {n} pairs")
    if n == 0:
        raise ValueError("retrieval needs at least one pair")
    bad = [k for k in ks if not isinstance(k, int) or k < 1]
    if bad:
        raise ValueError(f"k must be positive integers, got {bad}")
    if groups is not None and len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} pairs")
    keys = np.asarray(list(captions) if groups is None else [str(g) for g in groups], dtype=object)
    ids = np.unique(keys, return_inverse=True)[1].reshape(-1)
    same = torch.as_tensor(ids[:, None] == ids[None, :])  # (n, n): pair j is equivalent to pair i
    sim = img @ txt.T  # (images, texts)
    out: dict = {"n": n, "i2t_hits": {}, "t2i_hits": {}}
    for k in ks:
        kk = min(k, n)
        top_t = sim.topk(kk, dim=1).indices  # texts for each image
        top_i = sim.T.topk(kk, dim=1).indices  # images for each text
        i2t = same.gather(1, top_t).any(1).to(torch.float64)
        t2i = same.gather(1, top_i).any(1).to(torch.float64)
        out[f"i2t_r{k}"], out[f"t2i_r{k}"] = float(i2t.mean()), float(t2i.mean())
        out["i2t_hits"][k], out["t2i_hits"][k] = i2t.int().tolist(), t2i.int().tolist()
    return out


def embed_pairs(model, tokenizer, images: torch.Tensor, captions: Sequence[str], device="cpu", batch_size: int = 256):
    """L2-normalised image and caption embeddings of ``model`` (an open_clip CLIP)."""
    model.eval()
    ie, te = [], []
    with torch.no_grad():
        for s in range(0, len(captions), batch_size):
            ie.append(model.encode_image(images[s : s + batch_size].to(device), normalize=True).cpu())
            te.append(model.encode_text(tokenizer(list(captions[s : s + batch_size])).to(device), normalize=True).cpu())
    return torch.cat(ie), torch.cat(te)


def retrieval(model, tokenizer, images, captions, device="cpu", ks=(1, 5)) -> dict:
    """R@k both ways of ``model`` on (image, caption) pairs."""
    return recall_at_k(*embed_pairs(model, tokenizer, images, captions, device), captions, ks)


def embed_captions(model, tokenizer, captions: Sequence[str], device="cpu", batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings of ``captions`` (each distinct caption encoded once)."""
    uniq, inverse = np.unique(np.asarray(list(captions), dtype=object), return_inverse=True)
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(uniq), batch_size):
            out.append(model.encode_text(tokenizer(list(uniq[s : s + batch_size])).to(device), normalize=True).cpu())
    return torch.cat(out)[torch.as_tensor(inverse.reshape(-1))]


def retrieval_from_features(
    model, tokenizer, image_features, captions, device="cpu", ks=(1, 5), groups: Sequence | None = None
) -> dict:
    """R@k both ways from image embeddings already computed (e.g. by zero-shot evaluation) and the
    images' own captions, encoded here; ``groups`` as in :func:`recall_at_k`."""
    return recall_at_k(image_features, embed_captions(model, tokenizer, captions, device), captions, ks, groups)
