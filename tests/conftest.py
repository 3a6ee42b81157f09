import os
import subprocess
import sys
from pathlib import Path

import pytest

import visgoal  # noqa: F401  (chooses the headless GL backend before mujoco is imported)

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("VISGOAL_ROOT", str(ROOT))
os.environ.setdefault("VISGOAL_PROFILE", "smoke")

ENVS = ["inverted_pendulum", "fetch_reach", "point_maze", "ant_maze", "adroit_relocate", "franka_kitchen"]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def run_cli(*args, env=None):
    """`python -m visgoal ...` in a subprocess: the code path a user runs."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "visgoal", *args], capture_output=True, text=True, env=full_env)


@pytest.fixture(scope="session")
def smoke_dataset(tmp_path_factory):
    """A smoke-profile point_maze dataset, written once through the CLI."""
    out = tmp_path_factory.mktemp("ds") / "vae_dataset.h5"
    result = run_cli("dataset", "--env", "point_maze", "--profile", "smoke", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def smoke_vae(smoke_dataset):
    """A smoke-profile VAE trained on `smoke_dataset` (point_maze), through the CLI."""
    out = smoke_dataset.with_name("vae.pt")
    result = run_cli("train-vae", "--env", "point_maze", "--profile", "smoke", "--dataset", str(smoke_dataset),
                     "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch project directory with its own MLflow store; params.yaml comes from the repo."""
    path = tmp_path_factory.mktemp("work")
    saved = os.environ.get("MLFLOW_TRACKING_URI"), os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{path / 'mlflow.db'}"
    os.chdir(path)
    yield path
    os.chdir(saved[1])
    if saved[0] is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved[0]


@pytest.fixture(scope="session")
def smoke_demos(tmp_path_factory):
    """`record(env)`: smoke-profile demonstrations of the env's scripted teacher, recorded once per env
    through the CLI."""
    made = {}

    def record(env: str) -> Path:
        if env not in made:
            out = tmp_path_factory.mktemp("demos") / "demos.h5"
            result = run_cli("demos", "--env", env, "--profile", "smoke", "--out", str(out), "--quiet")
            assert result.returncode == 0, result.stderr
            made[env] = out
        return made[env]

    return record


def demos_args(env: str, record) -> list[str]:
    """`--demos` for a run on an env whose runs learn from demonstrations by default (its env file:
    franka_kitchen's), with `record` the `smoke_demos` fixture; nothing for the others."""
    from visgoal.config import load_params

    learns = load_params(profile="smoke", env=env)["demo_learning"]["enabled"]
    return ["--demos", str(record(env))] if learns else []
