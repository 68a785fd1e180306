"""The ``fit``/``tune`` splits: ``train`` divided once more for choosing hyper-parameters, with
``val`` (what every evaluation reads) untouched."""

import numpy as np
import pytest

from linrepro import data


def _keys(split, **kw):
    ds = data.MixedDomainDataset(("digits", "shapes"), split=split, resolution=8, **kw)
    return [ds.entry(i) for i in range(len(ds))]


def test_fit_and_tune_partition_train_and_never_touch_val():
    train, val = set(_keys("train")), set(_keys("val"))
    fit, tune = set(_keys("fit")), set(_keys("tune"))
    assert fit | tune == train and not fit & tune
    assert not tune & val and not fit & val
    # the tuning share of each domain, as declared, stratified by class
    for dom in ("digits", "shapes"):
        n_train = sum(1 for d, _, _ in train if d == dom)
        labels = np.array([lab for d, _, lab in tune if d == dom])
        assert abs(len(labels) - round(data.TUNE_FRACTION * n_train)) <= 0
        counts = np.bincount(labels)
        assert counts.max() - counts.min() <= 1


def test_tune_split_is_seeded_and_deterministic():
    assert _keys("tune", seed=3) == _keys("tune", seed=3)
    assert _keys("tune", seed=3) != _keys("tune", seed=4)


def test_unknown_split_names_the_value():
    with pytest.raises(ValueError, match="'holdout'"):
        data.MixedDomainDataset("digits", split="holdout")
