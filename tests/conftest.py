import os
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
