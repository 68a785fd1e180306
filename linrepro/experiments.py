"""Training grids for notebook 03: data export, one open_clip_train run per (model, attention),
zero-shot evaluation per domain. Each run's folder keeps open_clip_train's checkpoints and
linrepro's ``steps.csv``; ``summary.json`` is written last, so a folder without it is a run
that did not finish.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from linrepro import clip, data
from linrepro.runs import write_json


def prepare_data(out_dir, domains, resolution: int, seed: int, val_fraction: float,
                 n_per_domain: int | None, progress: bool = False) -> dict:
    """Export the training split as an open_clip CSV (reused when the same settings exist)."""
    domains = list(domains)
    key = f"{'-'.join(domains)}_r{resolution}_s{seed}_v{val_fraction}_n{n_per_domain or 'all'}"
    d = Path(out_dir) / key
    manifest = d / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    t = time.perf_counter()
    csv_path, n = data.write_csv(d, domains=domains, split="train", resolution=resolution, seed=seed,
                                 val_fraction=val_fraction, n_per_domain=n_per_domain, progress=progress)
    names = data.write_classnames(d, domains)
    info = {"dir": str(d), "train_csv": str(csv_path), "n_train": n, "classnames": str(names),
            "domains": domains, "resolution": resolution, "seed": seed, "val_fraction": val_fraction,
            "n_per_domain": n_per_domain, "export_s": time.perf_counter() - t}
    write_json(manifest, info)
    return info


class _Pairs(torch.utils.data.Dataset):
    """(image tensor, label) view of a MixedDomainDataset."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        s = self.ds[i]
        return s.image, s.label


def domain_loader(domain: str, preprocess, resolution: int, seed: int, val_fraction: float,
                  n_per_domain: int | None, split: str = "val", batch_size: int = 256):
    ds = data.MixedDomainDataset(domains=(domain,), split=split, resolution=resolution, seed=seed,
                                 val_fraction=val_fraction, n_per_domain=n_per_domain, transform=preprocess)
    return torch.utils.data.DataLoader(_Pairs(ds), batch_size=batch_size, shuffle=False, num_workers=0)


def zero_shot_domains(model, tokenizer, preprocess, domains, resolution: int, seed: int, val_fraction: float,
                      n_per_domain: int | None, classnames_path: str | None = None) -> list[dict]:
    from linrepro import zeroshot

    names = data.load_classnames(classnames_path) if classnames_path else None
    rows = []
    for dom in domains:
        spec = names[dom] if names else {"classnames": data.domain_spec(dom).classnames,
                                         "templates": data.domain_spec(dom).templates}
        loader = domain_loader(dom, preprocess, resolution, seed, val_fraction, n_per_domain)
        r = zeroshot.evaluate(model, tokenizer, loader, spec["classnames"], spec["templates"])
        rows.append({"domain": dom, "resolution": resolution, "chance": 1 / len(spec["classnames"]), **r})
    return rows


def train_and_evaluate(model_name: str, attention: str, dataset: dict, out_dir, *, epochs: int, batch_size: int,
                       lr: float, warmup: int, precision: str = "fp32", seed: int = 0, score_scale: float = 0.5,
                       eval_domains=None) -> dict:
    """One open_clip_train run with ``attention``, then zero-shot on each domain's val split."""
    from linrepro.train import open_clip_args, read_steps, run_open_clip_train

    logs = Path(out_dir)
    name = f"{model_name}-{attention}"
    run = logs / name
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text())
    resume = "latest" if (run / "checkpoints").exists() else None   # an interrupted run continues
    args = open_clip_args(model=model_name, train_data=dataset["train_csv"], logs=logs, name=name, epochs=epochs,
                          batch_size=batch_size, lr=lr, warmup=warmup, precision=precision, seed=seed,
                          resume=resume)
    t = time.perf_counter()
    model = run_open_clip_train(args, attention=attention, score_scale=score_scale)
    train_s = time.perf_counter() - t
    steps = read_steps(run)
    import open_clip

    _, _, preprocess = open_clip.create_model_and_transforms(model_name)   # the val transform only
    tokenizer = open_clip.get_tokenizer(model_name)
    zs = zero_shot_domains(model, tokenizer, preprocess, eval_domains or dataset["domains"], dataset["resolution"],
                           dataset["seed"], dataset["val_fraction"], dataset["n_per_domain"], dataset["classnames"])
    ckpts = sorted((run / "checkpoints").glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    tail = [s["loss"] for s in steps[-max(1, len(steps) // 10):]]
    summary = {
        "model": model_name, "attention": attention, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_params_nonembed": sum(p.numel() for n, p in model.named_parameters() if "token_embedding" not in n),
        "train_s": train_s, "steps": len(steps), "final_loss": statistics.fmean(tail) if tail else None,
        "images_per_s": statistics.median(s["samples_per_second"] for s in steps[1:]) if len(steps) > 1 else None,
        "zero_shot": zs, "checkpoint": str(ckpts[-1]) if ckpts else None, "run_dir": str(run),
        "train_flops_proxy": None,
    }
    write_json(run / "summary.json", summary)
    return summary


def load_model(summary: dict, device="cpu"):
    """Rebuild a trained model from its summary (checkpoint + attention)."""
    model, preprocess, tokenizer = clip.create_model(summary["model"], summary["attention"])
    ck = torch.load(summary["checkpoint"], map_location=device, weights_only=False)
    sd = {k.removeprefix("module."): v for k, v in ck["state_dict"].items()}
    model.load_state_dict(sd)
    return model.eval(), preprocess, tokenizer
