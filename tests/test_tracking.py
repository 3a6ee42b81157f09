"""The MLflow store is created safely by parallel processes."""

import subprocess
import sys


def test_parallel_processes_create_the_store_without_crashing(tmp_path, root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("import mlflow, sys\n"
            "from visgoal.tracking import init_store\n"
            "init_store()\n"
            "mlflow.set_experiment('visgoal/race')\n"
            "with mlflow.start_run(run_name=f'job{sys.argv[1]}'):\n"
            "    mlflow.log_metric('x', 1.0)\n")
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": uri}
    jobs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for job in jobs:
        _, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
    import mlflow

    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("visgoal/race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"job{i}" for i in range(2)]


def test_profiles_log_to_their_own_experiments(tmp_path, monkeypatch):
    """A smoke run is never the run a default-profile evaluation logs into, nor shown beside default runs."""
    from visgoal import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert tracking.experiment_name("point_maze", "default") == "visgoal/point_maze"
    assert tracking.experiment_name("point_maze", "smoke") != tracking.experiment_name("point_maze", "default")
    with tracking.run("point_maze", "td3", "smoke", seed=0) as smoke_id:
        pass
    assert tracking.latest_run("point_maze", "td3", "smoke", 0) == smoke_id
    assert tracking.latest_run("point_maze", "td3", "default", 0) is None
