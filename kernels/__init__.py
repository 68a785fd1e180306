"""Triton kernels of linrepro, installed as ``linrepro.kernels``.

``linear_attention_triton`` is called by ``linrepro.attention.linear_attention``
when ``backend="triton"`` (or ``"auto"`` on CUDA).
"""
from .affine_la import linear_attention_triton

__all__ = ["linear_attention_triton"]
