"""Module-level jobs for the worker-pool tests (a spawned worker imports them by name)."""

import os

import torch


def noisy_fit(seed: int) -> torch.Tensor:
    """A tiny fit that draws from torch's global generator (as dropout and initialisation do)."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(8, 1)
    x = torch.randn(64, 8)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.dropout(layer(x), 0.5).pow(2).mean().backward()
        opt.step()
    return layer.weight.detach().clone()


def worker_pid() -> int:
    return os.getpid()
