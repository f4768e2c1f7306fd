"""A tiny CNN and a training loop that times waiting for data apart from computing.

Used to show whether a data pipeline keeps up with the model: if most of a step is spent
waiting for the next batch, the model is starved and more workers or a better format help.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """A small CNN that starts learning the course's synthetic shapes within a few dozen steps.

    It halves the resolution first, so a step on 2 CPU cores takes a fraction of a second.
    """
    return nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


@dataclass
class StepTimes:
    """Seconds spent per step waiting for the loader and computing, and the losses seen."""

    data_s: list[float]
    compute_s: list[float]
    losses: list[float]

    @property
    def data_share(self) -> float:
        """Fraction of the loop's time spent waiting for data."""
        total = sum(self.data_s) + sum(self.compute_s)
        return sum(self.data_s) / total if total else 0.0


def train_steps(model: nn.Module, loader, steps: int, lr: float = 1e-2,
                device: str | torch.device = "cpu") -> StepTimes:
    """Train for `steps` batches on `device`; time `next(loader)` plus the copy of the batch
    to the device (data) apart from forward+backward (compute). The model is moved there, and
    uint8 batches are divided by 255 as float32 after the copy (a loader may ship either)."""
    device = torch.device(device)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    times = StepTimes([], [], [])
    model.train()
    iterator = iter(loader)
    for _ in range(steps):
        start = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            images, labels = next(iterator)
        images = images.to(device, non_blocking=True)
        if not images.is_floating_point():  # uint8 shipped by the loader: normalise here
            images = images.float().div_(255)
        labels = torch.as_tensor(labels).to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the copy is asynchronous: count it as data time
        fetched = time.perf_counter()
        optimiser.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimiser.step()
        times.losses.append(loss.item())  # .item() waits until the device has finished
        done = time.perf_counter()
        times.data_s.append(fetched - start)
        times.compute_s.append(done - fetched)
    return times
