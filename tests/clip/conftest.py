"""Fixtures shared by the training tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """An open_clip CSV of 48 random 32 px images with 4 caption classes."""
    from PIL import Image

    d = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(0)
    rows = ["filepath\ttitle"]
    for i in range(48):
        p = d / f"{i}.png"
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(p)
        rows.append(f"{p}\ta picture of class {i % 4}")
    (d / "train.csv").write_text("\n".join(rows) + "\n")
    return d / "train.csv"
