"""Module-level jobs for the worker-pool tests (a spawned worker imports them by name)."""

import os
import time

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


def alone(marker: str) -> bool:
    """Claim `marker` for a moment: False if another job holds it (two jobs ran at once)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    time.sleep(0.3)
    os.close(fd)
    os.remove(marker)
    return True


def wait_forever() -> None:
    while True:
        time.sleep(0.1)
