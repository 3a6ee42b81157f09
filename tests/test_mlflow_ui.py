"""The MLflow UI a researcher opens: a real `mlflow ui` and a real headless Chromium.

A smoke run (td3 and its evaluation, two seeds) goes into a fresh store; the experiment must be
typed for model training, and its comparison view (`tracking.view_path`) must open the runs table
with the columns that compare methods and seeds, which MLflow's own default view does not show.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, run_cli

COMPARED = ("metrics.`eval/success_rate`", "metrics.`final_eval/success_rate`", "metrics.`final_eval/final_distance`",
            "tags.`method`", "tags.`seed`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(base URL, experiment id, work dir) of `mlflow ui` serving a store with a smoke run in it."""
    import mlflow

    from visgoal.tracking import experiment_name

    work = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "VISGOAL_ROOT": str(ROOT)}
    for seed in (0, 1):
        result = run_cli("train", "--env", "point_maze", "--method", "td3", "--seed", str(seed), "--profile", "smoke",
                         "--quiet", "--out", str(work / "td3" / f"seed{seed}"), env=env)
        assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("evaluate", "--env", "point_maze", "--method", "td3", "--seeds", "0", "1", "--profile", "smoke",
                     "--quiet", "--runs", str(work / "td3"), "--out", str(work / "td3_eval.csv"), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    experiment = mlflow.MlflowClient(uri).get_experiment_by_name(experiment_name("point_maze", "smoke"))

    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "ui", "--backend-store-uri",
                               uri, "--host", "127.0.0.1", "--port", str(port)], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(0.5)
        yield base, experiment, work
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def chromium(*args: str) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "headless Chromium is missing: `make test` installs Debian's chromium"
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1800,700",
                             "--virtual-time-budget=15000", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_comparison_view_shows_methods_and_seeds_side_by_side(ui):
    base, experiment, work = ui
    from visgoal.tracking import view_path

    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    url = base + view_path(experiment.experiment_id)
    dom = chromium("--dump-dom", url)
    assert "td3-seed0" in dom and "td3-seed1" in dom, dom[-2000:]
    missing = [column for column in COMPARED if f'col-id="{column}"' not in dom]
    assert not missing, f"columns not in the runs table: {missing}"
    chromium(f"--screenshot={work / 'runs.png'}", url)  # what a reader sees (kept for a look)
    assert (work / "runs.png").stat().st_size > 10_000
    # MLflow's own default view of the same page shows none of them: why the view exists
    plain = chromium("--dump-dom", f"{base}/#/experiments/{experiment.experiment_id}/runs")
    assert "td3-seed0" in plain and 'col-id="metrics.`eval/success_rate`"' not in plain
