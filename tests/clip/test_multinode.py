"""Past one machine: two "nodes" on 127.0.0.1, each a ``torchrun --nnodes 2 --nproc-per-node 1`` agent
meeting at a c10d rendezvous, train tiny-S eq7 through linrepro's launcher (``python -m
linrepro.clip.train``) with gloo, and end with identical weights (what scripts/paper.sbatch runs
with srun on a SLURM cluster)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from linrepro.clip.train import open_clip_args, read_steps

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_c10d_rendezvous_train_to_identical_weights(tiny_csv, tmp_path):
    port = _free_port()
    args = open_clip_args(
        model="tiny-S", train_data=tiny_csv, logs=tmp_path, name="2nodes", epochs=1, batch_size=8, lr=1e-3, warmup=0
    )
    env = dict(os.environ, LINREPRO_DUMP_WEIGHTS=str(tmp_path / "w"), OMP_NUM_THREADS="1")
    procs = []
    for node in range(2):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc-per-node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            "linrepro-multinode-test",
            "--local-addr",
            "127.0.0.1",
            "-m",
            "linrepro.clip.train",
            "--attention",
            "eq7",
            "--",
            *args,
        ]
        log = open(tmp_path / f"node{node}.log", "w")
        procs.append((subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=600))
        finally:
            if p.poll() is None:
                p.kill()
            log.close()
    logs = [(tmp_path / f"node{i}.log").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], "\n\n".join(logs)
    assert "world_size: 2" in (tmp_path / "2nodes" / "out.log").read_text()
    w0 = torch.load(tmp_path / "w" / "rank0.pt")
    w1 = torch.load(tmp_path / "w" / "rank1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert [s["step"] for s in read_steps(tmp_path / "2nodes")] == list(range(3))  # 48 samples / (8 × 2 ranks)
