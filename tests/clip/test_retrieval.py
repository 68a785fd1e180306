"""Recall@k against a brute-force rank count, and on a real tiny open_clip model."""

import numpy as np
import pytest
import torch

from linrepro.clip.retrieval import recall_at_k, retrieval


def _brute(sim: np.ndarray, captions, k: int):
    """For each row, sort columns by similarity (stable) and look for a matching caption."""
    hits = []
    for i in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda j: -sim[i, j])[:k]
        hits.append(int(any(captions[j] == captions[i] for j in order)))
    return hits


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, d = 40, 8
    caps = [f"class {c}" for c in rng.integers(0, 6, n)]  # duplicated captions, as rendered domains have
    img = _unit(rng.normal(size=(n, d)))
    txt = _unit(img + 1.2 * rng.normal(size=(n, d)))
    r = recall_at_k(img, txt, caps, ks=(1, 5))
    sim = img @ txt.T
    for k in (1, 5):
        assert r["i2t_hits"][k] == _brute(sim, caps, k)
        assert r["t2i_hits"][k] == _brute(sim.T, caps, k)
        assert r[f"i2t_r{k}"] == pytest.approx(np.mean(_brute(sim, caps, k)))
    assert r["i2t_r5"] >= r["i2t_r1"]


def test_perfect_and_shuffled_alignment():
    rng = np.random.default_rng(3)
    e = _unit(rng.normal(size=(30, 16)))
    caps = [f"c{i}" for i in range(30)]
    r = recall_at_k(e, e, caps)
    assert r["i2t_r1"] == r["t2i_r1"] == 1.0
    shuffled = recall_at_k(e, e[rng.permutation(30)], caps)
    assert shuffled["i2t_r1"] < 0.3


def test_bad_input_is_named():
    e = np.eye(3)
    with pytest.raises(ValueError, match="2 captions for 3 pairs"):
        recall_at_k(e, e, ["a", "b"])
    with pytest.raises(ValueError, match="one shape"):
        recall_at_k(e, np.eye(4), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\[0\]"):
        recall_at_k(e, e, ["a", "b", "c"], ks=(0,))


def test_retrieval_runs_on_a_tiny_open_clip():
    import open_clip

    from linrepro.clip import CONFIG_DIR  # registers the tiny configs

    open_clip.add_model_config(CONFIG_DIR)
    model = open_clip.create_model("tiny-S")
    tok = open_clip.get_tokenizer("tiny-S")
    images = torch.randn(6, 3, 32, 32)
    caps = ["a red circle", "a blue square", "the digit 3", "the letter A", "a red circle", "a green star"]
    r = retrieval(model, tok, images, caps, ks=(1, 5))
    assert r["n"] == 6 and 0 <= r["i2t_r1"] <= r["i2t_r5"] <= 1 and len(r["t2i_hits"][1]) == 6


def test_hand_built_case_and_captions_encoded_once():
    """Three pairs, embeddings on the axes: image 0 is nearest caption 1, so i2t R@1 misses for
    pair 0 unless caption 1 reads the same; t2i likewise by hand."""
    from linrepro.clip.retrieval import embed_captions, retrieval_from_features

    img = np.array([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    txt = np.eye(3)
    # sim = img @ txt.T: image 0 -> [0.6, 0.8, 0] (best: text 1); image 1 -> text 1; image 2 -> text 2
    # text 0 -> images [0.6, 0, 0] (best: image 0); text 1 -> [0.8, 1, 0] (image 1); text 2 -> image 2
    r = recall_at_k(img, txt, ["a", "b", "c"], ks=(1, 2))
    assert r["i2t_hits"][1] == [0, 1, 1] and r["t2i_hits"][1] == [1, 1, 1]
    assert r["i2t_hits"][2] == [1, 1, 1] and r["i2t_r1"] == pytest.approx(2 / 3)
    same = recall_at_k(img, txt, ["a", "a", "c"], ks=(1,))  # captions 0 and 1 are one string: a hit
    assert same["i2t_hits"][1] == [1, 1, 1]

    calls = []

    class Stub:
        def eval(self):
            return self

        def encode_text(self, tokens, normalize=True):
            calls.append(tokens.shape[0])
            return torch.nn.functional.normalize(tokens[:, :3].float() + 1.0, dim=-1)

    def tok(caps):
        return torch.tensor([[len(c), ord(c[0]), ord(c[-1])] for c in caps])

    caps = ["one", "two", "one", "three"]
    e = embed_captions(Stub(), tok, caps)
    assert calls == [3] and torch.equal(e[0], e[2]) and not torch.equal(e[0], e[1])
    feats = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    assert retrieval_from_features(Stub(), tok, feats, caps)["i2t_hits"] == recall_at_k(feats, e, caps)["i2t_hits"]


def test_groups_make_any_caption_of_the_class_a_hit():
    """Two classes, two templates each: an image's nearest caption uses another template of its
    class. By caption string that is a miss; by class (groups) a hit, both ways."""
    import torch

    from linrepro.clip.retrieval import recall_at_k

    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    # captions' embeddings: pair 0's caption sits where images of class 0 are, but so does pair 1's
    txt = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = torch.nn.functional.normalize(txt + torch.tensor([[0.0, 0.01], [0.0, 0.0], [0.01, 0.0], [0.0, 0.02]]))
    caps = ["a 0.", "the 0.", "a 1.", "the 1."]
    labels = [0, 0, 1, 1]
    by_string = recall_at_k(img, txt, caps, ks=(1,))
    by_class = recall_at_k(img, txt, caps, ks=(1,), groups=labels)
    # image 0 (class 0): its nearest caption is pair 1's "the 0." (class 0, another template)
    assert by_string["i2t_hits"][1][0] == 0 and by_class["i2t_hits"][1][0] == 1
    # caption 0 ("a 0.") sits with the class-1 images: a miss either way
    assert by_class["t2i_hits"][1][0] == 0
    assert by_class["i2t_r1"] >= by_string["i2t_r1"]
    with pytest.raises(ValueError, match="3 groups for 4 pairs"):
        recall_at_k(img, txt, caps, groups=[0, 0, 1])
