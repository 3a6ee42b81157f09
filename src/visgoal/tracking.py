"""MLflow set-up, in one place: the tracking URI, experiments, run names and tags.

The embedded default store is SQLite, `mlflow.db` at the project root (MLflow
3.13+ refuses the old file store, which Lightning's MLFlowLogger would otherwise
pick). `MLFLOW_TRACKING_URI` overrides it. Create the store once, before parallel
jobs start (`init_store`): two processes that create a fresh mlflow.db at the
same time crash in MLflow's schema migration.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from visgoal.config import project_root


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def init_store() -> str:
    """Create the tracking store's schema now (idempotent) and make it the active one; returns the URI.

    For the SQLite store, creation happens under a file lock: parallel stages that
    start together (snakemake --cores 2) otherwise race in MLflow's schema migration.
    """
    import mlflow
    from filelock import FileLock

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{db}.lock"):
            mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_name(env: str) -> str:
    """One experiment per environment."""
    return f"visgoal/{env}"


def run_name(method: str, seed: int | None = None) -> str:
    """`vae`, `dataset`, or `<method>-seed<k>`."""
    return method if seed is None else f"{method}-seed{seed}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=project_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_hash(path: str | Path) -> str:
    """The content hash DVC uses for a file (md5), so MLflow runs and dvc.lock agree."""
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_tags(env: str, method: str, profile: str, seed: int | None = None, inputs: dict | None = None) -> dict:
    """Tags every run carries, so runs can be filtered and compared in `mlflow ui`."""
    tags = {"env": env, "method": method, "profile": profile, "git_commit": git_commit()}
    if seed is not None:
        tags["seed"] = str(seed)
    for name, path in (inputs or {}).items():
        tags[f"input_md5.{name}"] = file_hash(path)
    return tags
