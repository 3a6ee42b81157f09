"""VAE image datasets in HDF5: half goal images, half random-exploration observations.

Layout of `vae_dataset.h5` (N frames, interleaved observation, goal, observation, ...):

    images         (N, H, W, 3) uint8, chunked and gzip-compressed
    is_goal        (N,) bool     True for goal images
    state          (N, S) float32  proprioceptive state when the frame was taken
    achieved_goal  (N, G) float64  the true goal vector the frame shows
    desired_goal   (N, G) float64  the episode's goal when the frame was taken

Attributes record the env, its gymnasium id, the seed, the resolved parameters,
package versions, and `complete=True`, written last. The file is written under a
temporary name and renamed when complete, with `track_times=False` and fixed
chunks, so the same seed and parameters give a byte-identical file.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from visgoal.files import atomic_output

FORMAT = "visgoal-image-dataset/1"
FIELDS = ("images", "is_goal", "state", "achieved_goal", "desired_goal")
VERSIONED_PACKAGES = ("visgoal", "mujoco", "gymnasium", "gymnasium-robotics", "h5py", "numpy")


class DatasetError(ValueError):
    """A dataset file that is missing, truncated, or not ours: one line, with the fix."""


def package_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in VERSIONED_PACKAGES}


def collect_frames(env, frames: int, seed: int):
    """Yield (image, is_goal, state, achieved, desired): observation then goal image, alternating.

    Observations come from uniformly random actions; each goal image shows a fresh
    goal from the env's own distribution applied to the current scene (report section 4).
    """
    step = env.reset(seed=seed)
    for _ in range(frames // 2):
        yield step.image, False, step.state, step.achieved_goal, step.desired_goal
        goal = env.sample_goal()
        yield env.render_goal(goal), True, step.state, goal, goal
        step = env.step(env.action_space.sample())
        if step.terminated or step.truncated:
            step = env.reset()


def write_dataset(env, path: str | Path, frames: int, seed: int, chunk_frames: int = 64,
                  compression_level: int = 4, attrs: dict | None = None, progress: bool = True) -> Path:
    """Write `frames` frames to `path` incrementally (memory bounded by one chunk), atomically."""
    if frames % 2:
        raise ValueError(f"frames must be even (half observations, half goals), got {frames}")
    path = Path(path)
    first = env.reset(seed=seed)
    size = env.image_size
    state_dim, goal_dim = first.state.shape[0], first.achieved_goal.shape[0]
    chunk_frames = min(chunk_frames, frames)
    compression = {"compression": "gzip", "compression_opts": compression_level} if compression_level else {}
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        columns = {
            "images": f.create_dataset("images", (frames, size, size, 3), np.uint8,
                                       chunks=(chunk_frames, size, size, 3), track_times=False, **compression),
            "is_goal": f.create_dataset("is_goal", (frames,), bool, track_times=False),
            "state": f.create_dataset("state", (frames, state_dim), np.float32, track_times=False),
            "achieved_goal": f.create_dataset("achieved_goal", (frames, goal_dim), np.float64, track_times=False),
            "desired_goal": f.create_dataset("desired_goal", (frames, goal_dim), np.float64, track_times=False),
        }
        buffers = {name: [] for name in FIELDS}
        start = 0
        bar = tqdm(total=frames, desc=f"dataset {env.spec.name}", unit="frame", disable=not progress)
        for record in collect_frames(env, frames, seed):
            for name, value in zip(FIELDS, record):
                buffers[name].append(value)
            if len(buffers["images"]) == chunk_frames:
                start = _flush(columns, buffers, start)
                bar.update(chunk_frames)
        if buffers["images"]:
            n = len(buffers["images"])
            start = _flush(columns, buffers, start)
            bar.update(n)
        bar.close()
        f.attrs.update({
            "format": FORMAT,
            "env": env.spec.name,
            "gym_id": env.spec.gym_id,
            "seed": seed,
            "image_size": size,
            "success_threshold": env.spec.success_threshold,
            "versions": json.dumps(package_versions(), sort_keys=True),
            "params": json.dumps(attrs or {}, sort_keys=True),
        })
        f.attrs["complete"] = True  # last: a file without it was cut short
    return path


def _flush(columns: dict, buffers: dict, start: int) -> int:
    n = len(buffers["images"])
    for name, values in buffers.items():
        columns[name][start : start + n] = np.stack(values)
        values.clear()
    return start + n


class ImageDataset:
    """Read-only access to a dataset file, with clear errors for bad files.

    Opens lazily, so it can be handed to DataLoader workers: each worker opens
    its own handle on first use (h5py handles must not cross a fork).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._open() as f:
            self.attrs = dict(f.attrs)
            self.length = f["images"].shape[0]
            self.image_shape = f["images"].shape[1:]
        self._file: h5py.File | None = None

    def _open(self) -> h5py.File:
        fix = "re-create it with `python -m visgoal dataset`"
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: dataset not found; {fix}")
        try:
            f = h5py.File(self.path, "r")
        except OSError:
            raise DatasetError(f"{self.path}: not a readable HDF5 file (truncated or corrupt); {fix}") from None
        if f.attrs.get("format") != FORMAT:
            f.close()
            raise DatasetError(f"{self.path}: not a visgoal image dataset (format attribute missing); {fix}")
        if not f.attrs.get("complete", False) or any(name not in f for name in FIELDS):
            f.close()
            raise DatasetError(f"{self.path}: incomplete dataset (writing was interrupted); {fix}")
        return f

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            self._file = self._open()
        return self._file

    def __len__(self) -> int:
        return self.length

    def read(self, name: str, index) -> np.ndarray:
        try:
            return self.file[name][index]
        except (OSError, KeyError) as err:
            raise DatasetError(f"{self.path}: cannot read '{name}' ({err}); the file is corrupt, "
                               "re-create it with `python -m visgoal dataset`") from None

    def images(self, index) -> np.ndarray:
        return self.read("images", index)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):  # picklable for DataLoader workers: never ship an open handle
        state = self.__dict__.copy()
        state["_file"] = None
        return state
