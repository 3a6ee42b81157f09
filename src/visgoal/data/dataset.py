"""VAE image datasets in HDF5: half goal images, half random-exploration observations.

Layout of `vae_dataset.h5` (N frames, interleaved observation, goal, observation, ...; with
`dataset.demo_share` > 0 the last `demo_frames` of them are demonstrations' pictures instead):

    images         (N, H, W, 3) uint8, chunked and gzip-compressed
    is_goal        (N,) bool     True for goal images
    state          (N, S) float32  proprioceptive state when the frame was taken
    achieved_goal  (N, G) float64  the true goal vector the frame shows
    desired_goal   (N, G) float64  the episode's goal when the frame was taken

Attributes record the env, its gymnasium id, the seed, the resolved parameters,
package versions, and `complete=True`, written last; with demonstrations, `demo_frames` and the
md5 of the demos.h5 they came from (`demos`). The file is written under a
temporary name and renamed when complete, with `track_times=False` and fixed
chunks, so the same seed and parameters give a byte-identical file.
"""

from __future__ import annotations

import json
from functools import partial
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


def collect_frames(env, frames: int, seed: int, drawn=None):
    """Yield (index, (image, is_goal, state, achieved, desired)): an observation then a goal image,
    alternating, for the frames of the sequence that `drawn` holds (all of them by default).

    Observations come from uniformly random actions; each goal image shows a fresh
    goal from the env's own distribution applied to the current scene (report section 4).
    The other frames are stepped through without drawing them: the same simulation and the
    same random draws, so that processes can each make a share of one sequence.
    """
    drawn = range(frames) if drawn is None else drawn
    last = max(drawn, default=-1)
    env.render_images = False  # draw only the frames asked for (a goal image is drawn from the state)
    step = env.reset(seed=seed)
    for index in range(0, last + 1, 2):
        if index in drawn:
            yield index, (env.render(), False, step.state, step.achieved_goal, step.desired_goal)
        goal = env.sample_goal()
        if index + 1 in drawn:
            yield index + 1, (env.render_goal(goal), True, step.state, goal, goal)
        step = env.step(env.action_space.sample())
        if step.terminated or step.truncated:
            step = env.reset()


def frame_chunks(env_name: str, image_size: int, frames: int, seed: int, chunk_frames: int, starts: list[int]):
    """Yield (start, {field: array}) for the chunks of the sequence that begin at `starts`."""
    from visgoal.envs import make_env

    wanted = set().union(*(range(start, min(start + chunk_frames, frames)) for start in starts))
    buffers, start = {name: [] for name in FIELDS}, None
    with make_env(env_name, image_size=image_size) as env:
        for index, record in collect_frames(env, frames, seed, drawn=wanted):
            start = index if start is None else start
            for name, value in zip(FIELDS, record):
                buffers[name].append(value)
            if index + 1 == min(start + chunk_frames, frames):
                yield start, {name: np.stack(values) for name, values in buffers.items()}
                buffers, start = {name: [] for name in FIELDS}, None


def demo_frame_chunks(demos: Path, count: int, seed: int, chunk_frames: int):
    """Yield ({field: array}) chunks of `count` frames of the demonstrations `demos`: pictures drawn
    uniformly, with the dataset's `seed`, from its observation pictures and goal images together (without
    replacement while there are enough), in the file's order, each with its state, achieved goal and
    goal as a dataset frame has them (a goal image: its episode's first state, its goal twice)."""
    from visgoal.data.demos import open_demos, read_field

    with open_demos(demos) as f:
        start = read_field(f, "episodes/start")
        observation, achieved = read_field(f, "state/observation"), read_field(f, "state/achieved_goal")
        desired = read_field(f, "state/desired_goal")
        n = len(achieved)
        picks = np.sort(np.random.default_rng([seed, 2]).choice(n + len(start), count,
                                                               replace=count > n + len(start)))
        for first in range(0, count, chunk_frames):
            chunk = picks[first : first + chunk_frames]
            is_goal = chunk >= n
            episode = np.where(is_goal, chunk - n, np.searchsorted(start, chunk, side="right") - 1)
            frame = np.where(is_goal, start[episode], chunk)
            images = np.empty((len(chunk), *f["images/obs"].shape[1:]), np.uint8)
            for name, where in (("images/obs", ~is_goal), ("images/goal", is_goal)):
                unique, inverse = np.unique(np.where(is_goal, episode, chunk)[where], return_inverse=True)
                if len(unique):
                    images[where] = read_field(f, name, unique)[inverse]
            yield {"images": images, "is_goal": is_goal, "state": observation[frame],
                   "achieved_goal": np.where(is_goal[:, None], desired[episode], achieved[frame]),
                   "desired_goal": desired[episode]}


def write_dataset(env_name: str, path: str | Path, frames: int, seed: int, image_size: int = 64,
                  chunk_frames: int = 64, compression_level: int = 4, attrs: dict | None = None,
                  progress: bool = True, processes: int = 1, demos: Path | None = None, demo_frames: int = 0) -> Path:
    """Write `frames` frames of `env_name` to `path`, atomically. `processes` make its chunks in
    turn; they are written in order as they come, so the file is the same for any number, and
    memory holds the few chunks made ahead of their turn. The last `demo_frames` (even) are
    pictures of the demonstrations `demos` (`demo_frame_chunks`); without them, nothing is read."""
    from visgoal.envs import load_spec
    from visgoal.processes import deal, share_out

    if frames % 2 or demo_frames % 2:
        raise ValueError(f"frames and demo_frames must be even (half observations, half goals), got {frames} and "
                         f"{demo_frames}")
    path, spec = Path(path), load_spec(env_name)
    extra = {}
    if demo_frames:
        extra = {"demo_frames": demo_frames, "demos": check_demos(demos, env_name, spec.image_size or image_size)}
    own = frames - demo_frames  # the random-exploration sequence's
    chunk_frames = min(chunk_frames, frames)
    starts = list(range(0, own, chunk_frames))
    compression = {"compression": "gzip", "compression_opts": compression_level} if compression_level else {}
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        columns, waiting, turn = {}, {}, [0]  # turn: the next chunk to write
        bar = tqdm(total=frames, desc=f"dataset {env_name}", unit="frame", disable=not progress)

        def write(item) -> None:
            waiting.update([item])
            while turn[0] in waiting:
                values = waiting.pop(turn[0])
                if not columns:
                    columns.update(_create_columns(f, values, frames, chunk_frames, compression))
                n = len(values["images"])
                for name, value in values.items():
                    columns[name][turn[0] : turn[0] + n] = value
                turn[0] += n
                bar.update(n)

        share_out(partial(frame_chunks, env_name, image_size, own, seed, chunk_frames), deal(starts, processes),
                  write)
        for values in demo_frame_chunks(demos, demo_frames, seed, chunk_frames) if demo_frames else ():
            write((turn[0], values))
        bar.close()
        if turn[0] != frames:  # never marked complete with a chunk missing
            raise RuntimeError(f"{path}: only {turn[0]} of {frames} frames were made; run the dataset stage again")
        f.attrs.update({
            "format": FORMAT,
            "env": spec.name,
            "gym_id": spec.gym_id,
            "seed": seed,
            "image_size": columns["images"].shape[1],
            "success_threshold": spec.success_threshold,
            "versions": json.dumps(package_versions(), sort_keys=True),
            "params": json.dumps(attrs or {}, sort_keys=True),
            **extra,
        })
        f.attrs["complete"] = True  # last: a file without it was cut short
    return path


def check_demos(demos: Path, env_name: str, image_size: int) -> str:
    """The md5 of the demonstrations a dataset takes frames from, once they are found to be `env_name`'s,
    complete, and of the dataset's picture size (else one line, with the fix)."""
    from visgoal.data.demos import open_demos

    with open_demos(demos) as f:
        env, size = f.attrs.get("env"), int(f.attrs.get("image_size", -1))
    fix = f"record them with `python -m visgoal demos --env {env_name}`"
    if env != env_name:
        raise DatasetError(f"{demos}: demonstrations of {env}, not of {env_name}; {fix}")
    if size != image_size:
        raise DatasetError(f"{demos}: demonstrations at {size} px, the dataset's pictures at {image_size} px; {fix}")
    from visgoal.tracking import file_hash

    return file_hash(demos)


def _create_columns(f: h5py.File, first: dict, frames: int, chunk_frames: int, compression: dict) -> dict:
    """The file's datasets, shaped from the first chunk: images chunked and compressed."""
    size = first["images"].shape[1]
    return {
        "images": f.create_dataset("images", (frames, size, size, 3), np.uint8,
                                   chunks=(chunk_frames, size, size, 3), track_times=False, **compression),
        "is_goal": f.create_dataset("is_goal", (frames,), bool, track_times=False),
        "state": f.create_dataset("state", (frames, first["state"].shape[1]), np.float32, track_times=False),
        "achieved_goal": f.create_dataset("achieved_goal", (frames, first["achieved_goal"].shape[1]), np.float64,
                                          track_times=False),
        "desired_goal": f.create_dataset("desired_goal", (frames, first["desired_goal"].shape[1]), np.float64,
                                         track_times=False),
    }


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
