"""The same DAG on SLURM, for real: a single-node cluster with accounting on loopback
(tests/slurm/cluster.sh: Debian's slurm-wlm, slurmdbd, munge and mariadb-server, which
`make test` installs), the smoke DAG of one environment submitted through
`snakemake-executor-plugin-slurm` with the project's workflow profile, and every job
checked in `sacct`, where the plugin itself reads their states.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_pipeline import copy_pipeline, snakemake, snakemake_jobs, tool_env

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
ENV = "point_maze"


@pytest.fixture
def cluster():
    """SLURM_CONF of a running single-node cluster; stopped afterwards. Its directory is a short
    one of its own: slurmd's step sockets live in it, and a Unix socket's path has at most 108
    bytes (under pytest-xdist's tmp_path, `spool/d/localhost_1.4294967291` reached 111)."""
    directory = Path(tempfile.mkdtemp(prefix="visgoal-slurm-"))
    started = subprocess.run(["bash", str(CLUSTER), "start", str(directory)], capture_output=True, text=True,
                             timeout=300)
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-4000:]
        yield str(directory / "slurm.conf")
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(directory)], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


def sacct_until(count: int, env: dict, seconds: float = 60) -> list[str]:
    """Every job the cluster has accounted, once there are `count` of them or `seconds` have passed.
    slurmctld sends its records to slurmdbd on an agent queue, so a job can finish before sacct sees it.
    The start time is explicit: sacct's default is midnight today, which drops jobs of a run that crosses it."""
    deadline = time.monotonic() + seconds
    while True:
        lines = subprocess.run(["sacct", "-a", "-X", "--parsable2", "--noheader", "--starttime=2000-01-01",
                                "--format=JobIdRaw,JobName,State"],
                               capture_output=True, text=True, env=env, check=True).stdout.split()
        done = len(lines) >= count and all(line.endswith("|COMPLETED") for line in lines)
        if done or time.monotonic() > deadline:
            return lines
        time.sleep(2)


@pytest.mark.e2e
def test_the_smoke_dag_of_one_environment_runs_on_slurm(tmp_path, cluster):
    work = copy_pipeline(tmp_path / "pipeline", profile="smoke")
    # The project's SLURM profile, with this cluster's partition and quicker status checks.
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "debug"
    profile.update({"slurm-init-seconds-before-status-checks": 2, "seconds-between-status-checks": 3,
                    "latency-wait": 5})
    (work / "slurm").mkdir()
    (work / "slurm" / "config.yaml").write_text(yaml.safe_dump(profile))
    env = tool_env(work, SLURM_CONF=cluster, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    targets = [f"results/{ENV}/{method}_eval.csv" for method in params["methods"]]
    jobs = snakemake_jobs(work, *targets, env=env)

    result = snakemake(work, "--workflow-profile", "slurm", *targets, env=env, timeout=1500)
    assert all((work / out).is_file() for job in jobs for out in job["outputs"]), result.stdout[-3000:]
    accounting = sacct_until(len(jobs), env)
    states = [line.split("|")[2] for line in accounting]
    logs = Path(cluster).parent / "log"
    assert len(states) == len(jobs) and set(states) == {"COMPLETED"}, (
        len(jobs), accounting, (logs / "slurmctld.log").read_text()[-3000:], (logs / "slurmdbd.log").read_text()[-2000:])
    # One submission per job of the DAG: dataset, VAE, one training per method and seed, one evaluation per method.
    assert {job["rule"] for job in jobs} == {"dataset", "train_vae", "train_td3", "train_image", "evaluate"}
