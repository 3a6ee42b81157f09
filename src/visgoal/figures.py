"""Image grids saved as PNG (atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visgoal.files import atomic_output


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile equally sized HxWx3 uint8 images into one image, rows top to bottom."""
    h, w, _ = rows[0][0].shape
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = image
    return grid


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    import matplotlib.image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_output(path) as tmp:
        matplotlib.image.imsave(tmp, image, format="png")
    return Path(path)
