"""Adaptive class weights under torch.distributed: identical on every rank after an update."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import torch_imbalance as ti

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, queue) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        loss = ti.DualFocalLoss(
            class_weight="adaptive", num_classes=3, momentum=0.5, learnable_gamma=True
        )
        # Rank 0 sees only class 0, rank 1 only class 2 (and some ignored pixels).
        target = torch.full((2, 4, 4), 0 if rank == 0 else 2)
        if rank == 1:
            target[0, :2] = -100
        logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(rank))
        loss(logits, target).backward()
        queue.put((rank, loss.adaptive.frequencies.tolist(), loss.current_weight().tolist()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_adaptive_weights_identical_across_ranks():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    processes = [
        ctx.Process(target=_worker, args=(rank, port, queue)) for rank in range(WORLD_SIZE)
    ]
    for p in processes:
        p.start()
    results = dict(
        (rank, (freq, w)) for rank, freq, w in (queue.get(timeout=120) for _ in processes)
    )
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]
    # Global batch: 32 pixels of class 0, 24 valid pixels of class 2 -> frequencies [32, 0, 24]/56.
    expected = 0.5 * torch.full((3,), 1 / 3) + 0.5 * torch.tensor([32.0, 0.0, 24.0]) / 56
    torch.testing.assert_close(torch.tensor(results[0][0]), expected)
