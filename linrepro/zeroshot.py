"""Zero-shot classification with open_clip's ``build_zero_shot_classifier``.

The classifier is the mean text embedding of each class over the domain's templates (the
same class names and templates the training captions used, from ``classnames.json`` or
:mod:`linrepro.data`). Images are scored by cosine similarity; top-1/top-5 and a confusion
matrix are returned. Throughput (images/s) is measured on the image tower alone.
"""
from __future__ import annotations

import time

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
        return build_zero_shot_classifier(model, tokenizer, list(classnames), list(templates),
                                          num_classes_per_batch=10, device=device, use_tqdm=False)


def evaluate(model, tokenizer, loader, classnames, templates, device="cpu") -> dict:
    """Top-1/top-5 accuracy, confusion matrix and images/s over ``loader`` of (images, labels)."""
    model.eval()
    w = classifier(model, tokenizer, classnames, templates, device)
    k = min(5, len(classnames))
    n = correct1 = correct5 = 0
    n_cls = len(classnames)
    conf = np.zeros((n_cls, n_cls), dtype=np.int64)
    encode_s = 0.0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), torch.as_tensor(labels).to(device)
            t = time.perf_counter()
            feats = model.encode_image(images, normalize=True)
            encode_s += time.perf_counter() - t
            logits = feats @ w
            top = logits.topk(k, dim=-1).indices
            correct1 += (top[:, 0] == labels).sum().item()
            correct5 += (top == labels[:, None]).any(-1).sum().item()
            np.add.at(conf, (labels.cpu().numpy(), top[:, 0].cpu().numpy()), 1)
            n += len(labels)
    if n == 0:
        raise ValueError("the evaluation loader yielded no images")
    return {"top1": correct1 / n, "top5": correct5 / n, "n": n, "confusion": conf.tolist(),
            "images_per_s": n / encode_s if encode_s > 0 else None}
