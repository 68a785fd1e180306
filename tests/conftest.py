import os

# No GPU in CI: the Triton kernels run under the interpreter. It must be set before triton
# is imported anywhere, so it is set here, at collection time.
try:
    import torch

    _cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _cuda = False
if not _cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
