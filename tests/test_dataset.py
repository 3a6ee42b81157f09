"""HDF5 datasets: deterministic bytes, atomic writes, clear errors for bad files, via the real CLI."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_cli
from visgoal.data import DatasetError, ImageDataset, write_dataset
from visgoal.envs.core import ImageGoalEnv


def test_cli_writes_dataset_and_samples(smoke_dataset):
    data = ImageDataset(smoke_dataset)
    assert len(data) == 64 and data.image_shape == (64, 64, 3)
    is_goal = data.read("is_goal", slice(None))
    assert is_goal.sum() == 32, "half goal images, half observations"
    goals = data.read("achieved_goal", slice(None))[is_goal]
    desired = data.read("desired_goal", slice(None))[is_goal]
    assert np.array_equal(goals, desired), "a goal frame shows its goal"
    assert data.attrs["env"] == "point_maze" and data.attrs["seed"] == 0 and "mujoco" in data.attrs["versions"]
    assert (smoke_dataset.parent / "dataset_samples.png").stat().st_size > 0


def test_same_seed_gives_byte_identical_file(smoke_dataset, tmp_path):
    again = tmp_path / "again.h5"
    assert run_cli("dataset", "--env", "point_maze", "--profile", "smoke", "--out", str(again), "--quiet").returncode == 0
    assert again.read_bytes() == smoke_dataset.read_bytes()
    other = tmp_path / "other.h5"
    assert run_cli("dataset", "--env", "point_maze", "--profile", "smoke", "--set", "dataset.seed=1",
                   "--out", str(other), "--quiet").returncode == 0
    assert other.read_bytes() != smoke_dataset.read_bytes()


def test_two_processes_write_the_same_file(tmp_path):
    """speed.processes deals the chunks out to processes, each stepping through the frames before
    its own: the same bytes. Chunks of 7 frames split observation-goal pairs; the pendulum's
    episodes end within the 96 frames."""
    files = []
    for processes in (1, 2):
        out = tmp_path / f"p{processes}.h5"
        result = run_cli("dataset", "--env", "inverted_pendulum", "--profile", "smoke", "--out", str(out), "--quiet",
                         "--set", "dataset.frames=96", "--set", "dataset.chunk_frames=7",
                         "--set", f"speed.processes={processes}")
        assert result.returncode == 0, result.stderr
        files.append(out.read_bytes())
    assert files[0] == files[1]
    with h5py.File(tmp_path / "p1.h5") as f:
        assert f["images"].chunks[0] == 7 and f["is_goal"][:4].tolist() == [False, True, False, True]


def test_sigterm_stops_both_processes_at_once_and_leaves_no_file(tmp_path):
    """SIGTERM to a dataset made by two processes: both stop within seconds (the other process is
    not left to finish its share) and no file is left, not even a temporary one."""
    out = tmp_path / "d.h5"
    proc = subprocess.Popen([sys.executable, "-m", "visgoal", "dataset", "--env", "point_maze", "--profile", "smoke",
                             "--out", str(out), "--quiet", "--set", "dataset.frames=20000",
                             "--set", "speed.processes=2"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (children := _children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert children, "the second process started"
    time.sleep(3)  # both are making frames
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    proc.wait(timeout=30)
    assert time.monotonic() - started < 10 and proc.returncode != 0
    while any(map(_alive, children)) and time.monotonic() - started < 10:
        time.sleep(0.2)
    assert not any(map(_alive, children)), "the other process is gone"
    assert list(tmp_path.iterdir()) == []


def _alive(pid: int) -> bool:
    """A process that runs (a zombie has ended: its parent has not collected it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    class Interrupt(Exception):
        pass

    calls = {"n": 0}
    step = ImageGoalEnv.step

    def failing_step(self, action):
        calls["n"] += 1
        if calls["n"] > 10:
            raise Interrupt
        return step(self, action)

    monkeypatch.setattr(ImageGoalEnv, "step", failing_step)
    with pytest.raises(Interrupt):
        write_dataset("inverted_pendulum", tmp_path / "cut.h5", frames=64, seed=0, image_size=16, chunk_frames=8,
                      progress=False)
    assert list(tmp_path.iterdir()) == [], "no file, not even a temporary one"


def test_truncated_file_gets_a_clear_error(smoke_dataset, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(smoke_dataset.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="truncated or corrupt.*visgoal dataset"):
        ImageDataset(cut)
    result = run_cli("dataset", "--env", "nope", "--out", str(tmp_path / "x.h5"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: unknown environment 'nope'" in result.stderr.strip().splitlines()[-1]


def test_foreign_and_incomplete_files_get_clear_errors(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not a visgoal image dataset"):
        ImageDataset(foreign)
    with pytest.raises(DatasetError, match="not found"):
        ImageDataset(tmp_path / "missing.h5")
