"""Synthetic, structured images whose class is visible in the picture.

Each image is a smooth two-colour background with one shape or texture drawn on it, plus a little
noise. The class (0-9) decides the shape, so a tiny CNN can learn it, and neighbouring pixels are
correlated, so compression behaves as it does on real photos (random bytes would not compress).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CLASS_NAMES = (
    "disk",
    "square",
    "ring",
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "cross",
    "triangle",
    "blob",
)
NUM_CLASSES = len(CLASS_NAMES)


def _masks(label: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, k: int):
    """Return k soft masks (k, H, W) in [0, 1] for one class, with random position and size."""
    cy = rng.uniform(0.3, 0.7, (k, 1, 1)).astype(np.float32)
    cx = rng.uniform(0.3, 0.7, (k, 1, 1)).astype(np.float32)
    size = rng.uniform(0.15, 0.3, (k, 1, 1)).astype(np.float32)
    period = rng.uniform(0.08, 0.16, (k, 1, 1)).astype(np.float32)
    dy, dx = yy - cy, xx - cx
    r = np.sqrt(dy * dy + dx * dx)
    sharp = np.float32(40.0)

    def soft(v: np.ndarray) -> np.ndarray:  # smooth step: anti-aliased edges compress like photos
        return 1.0 / (1.0 + np.exp(-sharp * v))

    if label == 0:
        m = soft(size - r)
    elif label == 1:
        m = soft(size - np.maximum(np.abs(dy), np.abs(dx)))
    elif label == 2:
        m = soft(size * 0.35 - np.abs(r - size))
    elif label == 3:
        m = (np.sin(2 * np.pi * yy / period) > 0).astype(np.float32)
    elif label == 4:
        m = (np.sin(2 * np.pi * xx / period) > 0).astype(np.float32)
    elif label == 5:
        m = (np.sin(2 * np.pi * (xx + yy) / period) > 0).astype(np.float32)
    elif label == 6:
        m = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    elif label == 7:
        arm = size * 0.3
        m = soft(np.maximum(arm - np.abs(dy), arm - np.abs(dx))) * soft(size - np.maximum(
            np.abs(dy), np.abs(dx)))
    elif label == 8:
        m = soft(np.minimum(dy + size, size - np.abs(dx) - dy * 0.5))
    else:
        m = np.exp(-(r * r) / (2 * (size * 0.6) ** 2))
    return m.astype(np.float32)


def generate_block(labels: np.ndarray, height: int, width: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Draw one image per label and return them as uint8 of shape (len(labels), 3, H, W)."""
    k = len(labels)
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[None, :, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, None, :]
    # Background: a linear blend between two random colours along a random direction.
    c0 = rng.uniform(0, 255, (k, 3, 1, 1)).astype(np.float32)
    c1 = rng.uniform(0, 255, (k, 3, 1, 1)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, (k, 1, 1)).astype(np.float32)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3.0  # in (0, 1)
    images = c0 + (c1 - c0) * t[:, None]
    foreground = rng.uniform(0, 255, (k, 3, 1, 1)).astype(np.float32)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        m = _masks(int(label), yy, xx, rng, len(rows))[:, None]
        images[rows] = images[rows] * (1 - m) + foreground[rows] * m
    images += rng.integers(-8, 9, images.shape, dtype=np.int8)
    return np.clip(images, 0, 255).astype(np.uint8)


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return n int64 labels with every class equally often (up to one), in random order."""
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(labels)
    return labels


def iter_blocks(n: int, height: int, width: int, seed: int,
                block_bytes: int = 64 * 2**20) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, images, labels) blocks covering n images, never holding more than a block.

    The same arguments always give the same images.
    """
    labels = balanced_labels(n, np.random.default_rng(seed))
    per_image = 3 * height * width * 4  # float32 while drawing
    step = max(1, block_bytes // per_image)
    for start in range(0, n, step):
        stop = min(n, start + step)
        # One generator per block, derived from the seed and the block's first index, so a block
        # can be drawn without drawing the ones before it.
        rng = np.random.default_rng([seed, start])
        yield start, generate_block(labels[start:stop], height, width, rng), labels[start:stop]
