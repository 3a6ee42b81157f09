"""Demonstrations in HDF5 (`demos.h5`): the file `python -m visgoal demos` writes, and its reader.

Layout, for E episodes of T_e actions each (N = sum(T_e + 1) frames, M = sum(T_e) actions):

    images/obs           (N, H, W, 3) uint8  the camera picture before each action, and the final one: the
                                             env's observation picture, as the image agents see it
    images/goal          (E, H, W, 3) uint8  each episode's goal image
    actions              (M, A) float32      the action executed: the source's, plus `demos.noise` (clipped)
    teacher_actions      (M, A) float32      the source's own action in that state (DART's label): the same
                                             as `actions` without noise
    episodes/start       (E,) int64          index of the episode's first frame in images/obs
    episodes/length      (E,) int64          T_e, its actions (its frames are T_e + 1)
    episodes/seed        (E,) int64          its reset seed (visgoal.evaluation.demo_seed)
    episodes/success     (E,) bool           the protocol's success: the goal within its threshold at the end
    episodes/terminated  (E,) bool           ended by the env (the kitchen's task done, a fall), not its time limit
    state/observation    (N, S) float32      the simulator's state vector of each frame     } read only by the
    state/achieved_goal  (N, G) float64      the true goal vector each frame shows          } state oracle
    state/desired_goal   (E, G) float64      each episode's goal vector                     }

Episode e's frames are images/obs[start[e] : start[e] + T_e + 1], its actions the rows
start[e] - e ... start[e] - e + T_e - 1 of `actions` (`episode`). Attributes: format, env,
gym_id, source (`teacher`, or `policy:<md5 of the policy.pt>`), seed (`demos.seed`), params (the
demos section and the render one, JSON), image_size, versions, and `complete=True`, written last.
The file is written under a temporary name and renamed when complete, with `track_times=False` and
fixed chunks, so the same seed and parameters give the same bytes.

`read_demos(path)` gives what an image agent may read: pictures, goal images, actions and the
episodes' bounds, never the `state` group (`state=True` adds it, for the state oracle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from visgoal.files import atomic_output

FORMAT = "visgoal-demos/1"
CHUNK_FRAMES = 64  # pictures per HDF5 chunk of images/obs
COMPRESSION = {"compression": "gzip", "compression_opts": 4}
EPISODE_FIELDS = ("start", "length", "seed", "success", "terminated")
FIELDS = ("images/obs", "images/goal", "actions", "teacher_actions", *(f"episodes/{k}" for k in EPISODE_FIELDS))
STATE_FIELDS = ("state/observation", "state/achieved_goal", "state/desired_goal")


class DemosError(ValueError):
    """A demonstrations file that is missing, truncated, or not ours: one line, with the fix."""


EPISODE_KEYS = ("frames", "goal", "actions", "teacher_actions", "observation", "achieved_goal", "desired_goal",
                "seed", "success", "terminated")  # what `write_demos` takes of each episode


def write_demos(path: str | Path, episodes: Iterable[dict], count: int, attrs: dict) -> Path:
    """Write `count` episodes to `path`, atomically. Each episode is a dict of EPISODE_KEYS: its T + 1
    pictures (`frames`), goal image, T actions (executed, and the source's own), the T + 1 state and
    achieved-goal vectors, its goal vector (`desired_goal`), reset seed and outcome. Only the
    pictures stream to the file (memory holds one episode of them); the rest is written at the end."""
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        columns: dict[str, list] = {key: [] for key in (*EPISODE_KEYS[1:], "start")}
        frames = 0
        for episode in episodes:
            pictures = episode["frames"]
            n, h, w, _ = pictures.shape
            if len(episode["actions"]) != n - 1 or len(episode["teacher_actions"]) != n - 1:
                raise ValueError(f"an episode of {n} frames has {n - 1} actions, got {len(episode['actions'])}")
            if not frames:
                f.create_dataset("images/obs", (0, h, w, 3), np.uint8, maxshape=(None, h, w, 3),
                                 chunks=(CHUNK_FRAMES, h, w, 3), track_times=False, **COMPRESSION)
                f.create_dataset("images/goal", (count, h, w, 3), np.uint8, chunks=(1, h, w, 3), track_times=False,
                                 **COMPRESSION)
            f["images/obs"].resize(frames + n, axis=0)
            f["images/obs"][frames : frames + n] = pictures
            f["images/goal"][len(columns["start"])] = episode["goal"]
            for key in EPISODE_KEYS[1:]:
                columns[key].append(episode[key])
            columns["start"].append(frames)
            frames += n
        if len(columns["start"]) != count:  # never marked complete with an episode missing
            raise RuntimeError(f"{path}: only {len(columns['start'])} of {count} episodes were recorded; "
                               f"run the demos stage again")

        def column(name, value, dtype):
            f.create_dataset(name, data=np.asarray(value, dtype=dtype), track_times=False)

        column("actions", np.concatenate(columns["actions"]), np.float32)
        column("teacher_actions", np.concatenate(columns["teacher_actions"]), np.float32)
        column("episodes/start", columns["start"], np.int64)
        column("episodes/length", [len(a) for a in columns["actions"]], np.int64)
        column("episodes/seed", columns["seed"], np.int64)
        column("episodes/success", columns["success"], bool)
        column("episodes/terminated", columns["terminated"], bool)
        column("state/observation", np.concatenate(columns["observation"]), np.float32)
        column("state/achieved_goal", np.concatenate(columns["achieved_goal"]), np.float64)
        column("state/desired_goal", np.stack(columns["desired_goal"]), np.float64)
        f.attrs.update({key: value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)
                        for key, value in {"format": FORMAT, **attrs}.items()})
        f.attrs["complete"] = True  # last: a file without it was cut short
    return path


FIX = "record them again with `python -m visgoal demos --env <env>`"


def open_demos(path: str | Path) -> h5py.File:
    """The open file, checked: there, readable, ours and complete; else DemosError in one line."""
    path = Path(path)
    if not path.is_file():
        raise DemosError(f"{path}: demonstrations not found; record them with `python -m visgoal demos --env <env>`")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DemosError(f"{path}: not a readable HDF5 file (truncated or corrupt); {FIX}") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise DemosError(f"{path}: not a visgoal demonstrations file (format attribute missing); {FIX}")
    if not f.attrs.get("complete", False) or any(name not in f for name in FIELDS + STATE_FIELDS):
        f.close()
        raise DemosError(f"{path}: incomplete demonstrations (writing was interrupted); {FIX}")
    return f


def read_field(f: h5py.File, name: str, index=slice(None)) -> np.ndarray:
    try:
        return f[name][index]
    except (OSError, KeyError, ValueError) as err:
        raise DemosError(f"{f.filename}: cannot read '{name}' ({err}); the file is corrupt, {FIX}") from None


def read_demos(path: str | Path, state: bool = False) -> dict[str, np.ndarray | dict]:
    """The demonstrations of `path` in memory, by the file's names: `obs` and `goal` (images/obs and
    images/goal), `actions`, `teacher_actions`, and the episodes' `start`, `length`, `seed`, `success`
    and `terminated`; `attrs`, the file's attributes. Never the simulator's state unless `state` (the
    state oracle's): then `state` = {observation, achieved_goal, desired_goal}. A missing, truncated
    or foreign file fails in one line."""
    with open_demos(path) as f:
        demos = {name.rpartition("/")[2]: read_field(f, name) for name in FIELDS}
        demos["attrs"] = dict(f.attrs)
        if state:
            demos["state"] = {name.partition("/")[2]: read_field(f, name) for name in STATE_FIELDS}
    return demos


def episode(demos: dict, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode e of `read_demos`' dict: its T + 1 pictures, its goal image and its T executed actions."""
    first, steps = int(demos["start"][e]), int(demos["length"][e])
    return demos["obs"][first : first + steps + 1], demos["goal"][e], demos["actions"][first - e : first - e + steps]
