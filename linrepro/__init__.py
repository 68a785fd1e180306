"""linrepro: notebook-driven reproduction of linear attention in CLIP-style transformers."""
__version__ = "0.1.0"
