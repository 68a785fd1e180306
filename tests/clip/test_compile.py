"""torch.compile of a tiny LA CLIP: no graph break caused by linrepro's attention, and a compiled training
step matches the eager one. Also the traceable form the dispatcher runs while compiling, against float64."""

from __future__ import annotations

import pytest
import torch

from linrepro import clip
from linrepro.attention import linear_attention, quadratic_reference


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model, _, _ = clip.create_model_and_transforms("tiny-S", "eq7", score_scale="1/N")
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(4, 3, 32, 32, generator=g)
    text = torch.randint(1, 400, (4, 16), generator=g)
    return model, images, text


def _loss(model, images, text):
    img, txt, scale = model(images, text)[:3]
    logits = scale * img @ txt.t()
    labels = torch.arange(len(img))
    ce = torch.nn.functional.cross_entropy
    return (ce(logits, labels) + ce(logits.t(), labels)) / 2


def _attention_breaks(explanation, where=("linrepro/attention", "linrepro/kernels", "linrepro/clip")) -> list[str]:
    """Graph-break reasons whose user stack passes through linrepro's attention (``where``)."""
    bad = []
    for br in explanation.break_reasons:
        frames = " | ".join(f"{f.filename}:{f.lineno}" for f in br.user_stack)
        if any(w in frames for w in where):
            bad.append(f"{br.reason} @ {frames}")
    return bad


def test_tiny_la_clip_has_no_graph_break_from_linrepro_attention():
    model, images, text = _model_and_batch()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(_loss)(model, images, text)
    assert _attention_breaks(explanation) == []
    assert explanation.graph_count >= 1


def test_compiled_training_step_matches_eager():
    """One training step of the compiled (aot_eager: forward and backward traced) tiny eq7 CLIP: the same
    loss, the same gradients, and after an SGD step the same weights. (Not AdamW: it divides each
    gradient by its own magnitude, so a gradient of 3e-9 that differs in its third digit, as float32
    sums in another order do, moves a weight by 1e-5; the gradients themselves agree to 1e-10.)"""
    torch._dynamo.reset()
    results = []
    for compiled in (False, True):
        model, images, text = _model_and_batch(seed=1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = torch.compile(_loss, backend="aot_eager", fullgraph=False) if compiled else _loss
        loss = step(model, images, text)
        loss.backward()
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
        opt.step()
        results.append((loss.detach(), grads, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    (l0, g0, w0), (l1, g1, w1) = results
    assert torch.isfinite(l1)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g0.keys() and len(g0) > 10
    for k in g0:  # to float32 rounding of the tensor's own scale (measured: at most 1e-6 of it)
        err = float((g1[k] - g0[k]).abs().max())
        assert err <= 1e-5 * float(g0[k].abs().max()) + 1e-9, f"{k}: gradients differ by {err:.3g}"
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], rtol=1e-5, atol=2e-6, msg=k)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq4", "eq7"])
def test_linear_attention_compiles_fullgraph_and_matches_float64(variant, causal):
    """fullgraph=True: a graph break anywhere in linear_attention would raise. Outputs and gradients agree
    with the float64 quadratic form."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 70, 8, generator=g, requires_grad=True) for _ in range(3))
    go = torch.randn(2, 2, 70, 8, generator=g)

    def f(q, k, v):
        return linear_attention(q, k, v, variant=variant, causal=causal, score_scale="1/N")

    o = torch.compile(f, backend="aot_eager", fullgraph=True)(q, k, v)
    grads = torch.autograd.grad(o, (q, k, v), go)
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    ref = quadratic_reference(*leaves, variant=variant, causal=causal, score_scale="1/N")
    ref_grads = torch.autograd.grad(ref, leaves, go.double())
    torch.testing.assert_close(o.double(), ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


def test_compiled_block_still_refuses_a_mask_that_is_not_causal():
    """Under torch.compile the causal-mask check is an assertion op, not a Python bool: a mask that
    is not causal still fails, at run time."""
    from linrepro.clip import LinearMultiheadAttention

    torch._dynamo.reset()
    attn = LinearMultiheadAttention(16, 2, variant="eq7", score_scale="1/N")
    x = torch.randn(2, 5, 16)
    causal = torch.full((5, 5), float("-inf")).triu(1)
    f = torch.compile(lambda x, m: attn(x, x, x, need_weights=False, attn_mask=m)[0], backend="eager")
    eager = attn(x, x, x, need_weights=False, attn_mask=causal)[0]
    torch.testing.assert_close(f(x, causal), eager)
    with pytest.raises(RuntimeError, match="causal"):
        f(x, torch.zeros(5, 5))
