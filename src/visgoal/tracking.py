"""MLflow set-up, in one place: the tracking URI, experiments, run names and tags.

The embedded default store is SQLite, `mlflow.db` at the project root (MLflow
3.13+ refuses the old file store, which Lightning's MLFlowLogger would otherwise
pick). `MLFLOW_TRACKING_URI` overrides it. Create the store once, before parallel
jobs start (`init_store`): two processes that create a fresh mlflow.db at the
same time crash in MLflow's schema migration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Iterator

from visgoal.config import project_root

log = logging.getLogger("visgoal")


# MLflow 3's UI shows an experiment as model training (runs, metrics, charts) rather than GenAI
# traces when it carries this tag.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"

# The comparison view every experiment carries, as a view the UI can share: the runs table opens with
# the columns a researcher compares (the same metric names for every method and seed). Open it with
# `view_path`; MLflow's own default view shows no metric until columns are picked.
VIEW_KEY = "visgoal"
COMPARE_COLUMNS = ["tags.`method`", "tags.`seed`", "metrics.`eval/success_rate`", "metrics.`eval/final_distance`",
                   "metrics.`final_eval/success_rate`", "metrics.`final_eval/final_distance`",
                   "metrics.`distance_spearman`", "metrics.`success_auc`"]


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


def experiment_name(env: str, profile: str) -> str:
    """One experiment per environment and profile: `visgoal/<env>` for the default profile,
    `visgoal-<profile>/<env>` for the others, so that a smoke run never mixes with the runs it
    would be compared with (nor becomes the run an evaluation logs into)."""
    return f"visgoal/{env}" if profile == "default" else f"visgoal-{profile}/{env}"


def view_path(experiment_id: str) -> str:
    """The comparison view of an experiment, to append to the `mlflow ui` address."""
    return f"/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


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


def fingerprint(parameters: dict, files: dict[str, str | Path], **parts: str) -> dict[str, str]:
    """What resume state must match to be resumed, part by part: `parts` as given, a hash of the
    `parameters`, the package version, and the content of every input file."""
    import hashlib
    import json
    from importlib.metadata import version

    return {**parts,
            "parameters": hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest(),
            "visgoal version": version("visgoal"), **{name: file_hash(path) for name, path in files.items()}}


def changed(saved, now: dict[str, str]) -> list[str]:
    """The parts of `now` that a saved fingerprint does not match (all of them if there is none)."""
    return sorted(k for k in now if not isinstance(saved, dict) or saved.get(k) != now[k])


def base_tags(env: str, method: str, profile: str, seed: int | None = None, inputs: dict | None = None) -> dict:
    """Tags every run carries, so runs can be filtered and compared in `mlflow ui`."""
    tags = {"env": env, "method": method, "profile": profile, "git_commit": git_commit()}
    if seed is not None:
        tags["seed"] = str(seed)
    for name, path in (inputs or {}).items():
        tags[f"input_md5.{name.replace(' ', '_')}"] = file_hash(path)
    return tags


def latest_run(env: str, method: str, profile: str, seed: int | None = None, view: str | None = None) -> str | None:
    """The id of the newest run named `run_name(method, seed)` in the env's experiment (that saw
    `view`: state, latent or pixels, where given), or None."""
    import mlflow

    client = mlflow.MlflowClient(init_store())
    experiment = client.get_experiment_by_name(experiment_name(env, profile))
    if experiment is None:
        return None
    query = f"tags.method = '{method}' and attributes.run_name = '{run_name(method, seed)}'"
    if seed is not None:
        query += f" and tags.seed = '{seed}'"
    if view is not None:
        query += f" and tags.view = '{view}'"
    found = client.search_runs([experiment.experiment_id], filter_string=query,
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


@contextlib.contextmanager
def run(env: str, method: str, profile: str, seed: int | None = None, run_id: str | None = None,
        params: dict | None = None, inputs: dict | None = None) -> Iterator[str]:
    """The MLflow run of one stage invocation, the one way runs start and end: every stage uses it.

    Resumes into `run_id` when the store has it (a training run continued from its checkpoint,
    or evaluation logging into the training run); otherwise starts a run named
    `run_name(method, seed)` with `base_tags` and `params`. Yields the run id; ends the run
    FINISHED, or KILLED when the block raises (a SIGTERM, a Ctrl-C or an error)."""
    import mlflow

    init_store()
    experiment = mlflow.set_experiment(experiment_name(env, profile))
    client = mlflow.MlflowClient()
    view = json.dumps({"selectedColumns": COMPARE_COLUMNS, "orderByKey": "attributes.start_time", "orderByAsc": False})
    for key, value in ((EXPERIMENT_KIND, MODEL_TRAINING),  # model training, not the UI's GenAI traces page
                       (f"mlflow.sharedViewState.{VIEW_KEY}", view)):
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    finished_at = None
    if run_id and (found := client.search_runs([experiment.experiment_id],
                                               filter_string=f"attributes.run_id = '{run_id}'")):
        if found[0].info.status == "FINISHED":  # an evaluation logging into its training run
            finished_at = found[0].info.end_time
        mlflow.start_run(run_id=run_id)
    else:
        if run_id:  # the store was moved or deleted since the run began: a fresh run
            log.warning("MLflow run %s is not in the store; logging to a new run", run_id)
        mlflow.start_run(run_name=run_name(method, seed), tags=base_tags(env, method, profile, seed, inputs))
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    active = mlflow.active_run().info.run_id
    try:
        yield active
    except BaseException:
        mlflow.end_run(status="KILLED")
        raise
    mlflow.end_run()
    if finished_at is not None:  # its duration stays the training's, not until this later evaluation
        client.set_terminated(active, "FINISHED", end_time=finished_at)
