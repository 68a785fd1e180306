"""``python -m linrepro.train``: the training launcher under a short name.

The same launcher as ``python -m linrepro.clip.train`` (same arguments, same exit codes: see that
module), so that torchrun can start it as ``-m linrepro.train``::

    torchrun --nproc_per_node 2 -m linrepro.train --attention eq7 --score-scale 1/N \\
        --mixed-resolutions 16,32 -- --train-data data/train.csv --force-image-size 32 ...
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """:func:`linrepro.clip.train.main` (``argv`` defaults to the command line)."""
    from linrepro.clip import train

    return train.main(argv)


def _one_thread_per_cpu_rank() -> None:
    """Under torchrun on CPU, one OpenMP thread per rank unless OMP_NUM_THREADS says otherwise (as
    ``python -m linrepro.clip.train`` does; torch has read the variable on import, so the thread
    count is set too): :func:`linrepro.clip.train._one_thread_per_cpu_rank`."""
    from linrepro.clip import train

    train._one_thread_per_cpu_rank()


if __name__ == "__main__":
    _one_thread_per_cpu_rank()
    sys.exit(main())
