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


def save_labelled_grid(rows: list[list[np.ndarray]], path: str | Path, title: str, row_labels: list[str],
                       column_labels: list[str] | None = None, scale: int = 2) -> Path:
    """`image_grid(rows)` with a title, a label left of each row and one above each column: a picture
    a reader understands without the README (which row is the goal, which column the final frame)."""
    import textwrap

    from matplotlib.figure import Figure

    grid = image_grid(rows)
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    label_in = max(1.2, 0.075 * max(len(line) for label in row_labels for line in label.split("\n")))
    width, height = grid.shape[1] * scale / 100, grid.shape[0] * scale / 100
    title = textwrap.fill(title, width=int((width + label_in) * 13))  # about 13 characters an inch at 9 pt
    fig = Figure(figsize=(width + label_in + 0.2, height + 0.3 + 0.15 * (title.count("\n") + 1)
                          + 0.3 * (column_labels is not None)), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([2 + i * (h + 2) + h / 2 for i in range(len(rows))], row_labels, fontsize=8)
    if column_labels:
        ax.set_xticks([2 + j * (w + 2) + w / 2 for j in range(cols)], column_labels, fontsize=8)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, fontsize=9)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    import matplotlib.image

    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_output(path) as tmp:
        matplotlib.image.imsave(tmp, image, format="png")
    return Path(path)
