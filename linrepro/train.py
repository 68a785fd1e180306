"""``python -m linrepro.train``: the training launcher under a short name.

The same launcher as ``python -m linrepro.clip.train`` (same arguments, same exit codes: see that
module), so that torchrun can start it as ``-m linrepro.train``::

    torchrun --nproc_per_node 2 -m linrepro.train --attention eq7 --score-scale 1/N \\
        --mixed-resolutions 16,32 -- --train-data data/train.csv --force-image-size 32 ...
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """:func:`linrepro.clip.train.main` (``argv`` defaults to the command line)."""
    from linrepro.clip import train

    return train.main(argv)


def _one_thread_per_cpu_rank() -> None:
    """Under torchrun on CPU, one OpenMP thread per rank unless OMP_NUM_THREADS says otherwise (as
    ``python -m linrepro.clip.train`` sets; torch has read the variable on import, so the thread
    count is set too)."""
    if os.environ.get("LOCAL_RANK") is None or "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


if __name__ == "__main__":
    _one_thread_per_cpu_rank()
    sys.exit(main())
