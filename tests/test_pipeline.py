"""The pipeline: Snakemake and DVC declare the same DAG, and it runs end to end at the smoke profile.

Fast tests (a few seconds each) work on a copy of the pipeline files in a temporary directory, in
dry runs: no result is written and nothing in the repository changes. The end-to-end tests run
the whole smoke DAG (every environment, every method) and take minutes; they are marked `e2e`
(`pytest -m "not e2e"` leaves them out while iterating; `make test` and CI run everything).
"""

from __future__ import annotations

import csv
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent  # the virtualenv running the tests: snakemake, dvc and python
PIPELINE_FILES = ("Snakefile", "workflow", "params.yaml", "envs", "dvc.yaml", ".dvcignore")
LOG_REDIRECT = re.compile(r"^(?P<cmd>.*) > (?P<log>\S+) 2>&1$")

E2E = pytest.mark.e2e
DVC_ENVS = ("fetch_reach", "point_maze")  # what the e2e fixture builds with `dvc repro` as well


# --- helpers ------------------------------------------------------------------------------
def copy_pipeline(dest: Path, profile: str | None = None, with_source: bool = False,
                  smoke_overrides: dict | None = None) -> Path:
    """The pipeline files in `dest`, a DVC repository without Git (`core.no_scm`).

    `profile` writes that profile's values into params.yaml's own sections and selects the
    default profile: what DVC runs (it refuses a profile that overrides the sections), and what
    Snakemake then runs too, into `results/`. `with_source` also copies src/ (the code the DVC
    stages declare as deps; the stages themselves import the installed package).
    `smoke_overrides` is deep-merged into `profiles.smoke` first."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES + (("src",) if with_source else ()):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest / name)
    (dest / ".dvc").mkdir()
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    from configobj import ConfigObj  # DVC's own config format

    config = ConfigObj(str(dest / ".dvc" / "config"))
    config.setdefault("core", {})["no_scm"] = "true"  # what `dvc config core.no_scm true` writes
    config.write()
    if profile or smoke_overrides:
        params = yaml.safe_load((dest / "params.yaml").read_text())
        for section, values in (smoke_overrides or {}).items():
            params["profiles"]["smoke"].setdefault(section, {}).update(values)
        if profile:
            from visgoal.config import deep_merge

            overlay = params["profiles"].get(profile) or {}
            params.update(deep_merge(params, overlay), profile="default")
            # The profile wins over an environment's own tuning: what it sets leaves the env files too.
            for spec_file in (dest / "envs").glob("*.yaml"):
                spec = yaml.safe_load(spec_file.read_text())
                if spec.get("params"):
                    spec["params"] = without(spec["params"], overlay)
                    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def without(values: dict, overlay: dict) -> dict:
    """`values` less every key that `overlay` sets (nested), empty sections dropped."""
    kept = {}
    for key, value in values.items():
        if key in overlay and not (isinstance(value, dict) and isinstance(overlay[key], dict)):
            continue
        kept[key] = without(value, overlay[key]) if key in overlay else value
    return {k: v for k, v in kept.items() if v != {}}


def tool_env(workdir: Path, **extra) -> dict:
    """The environment of a pipeline run in `workdir`: its own params.yaml and MLflow store, the
    virtualenv first on PATH (DVC runs `python` from PATH), the profile from params.yaml."""
    env = {k: v for k, v in os.environ.items() if k not in ("VISGOAL_PROFILE", "MLFLOW_TRACKING_URI")}
    env.update(VISGOAL_ROOT=str(workdir), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


def tool(name: str, workdir: Path, *args, env: dict | None = None, check: bool = True, timeout: float = 120):
    """Run the virtualenv's `name` (snakemake, dvc) in `workdir`; with check, a failure shows its output."""
    result = subprocess.run([str(BIN / name), *args], cwd=workdir, env=env or tool_env(workdir),
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{name} {' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def snakemake(workdir: Path, *args, **kwargs):
    return tool("snakemake", workdir, *args, **kwargs)


def dvc(workdir: Path, *args, timeout: float = 3600, **kwargs):
    return tool("dvc", workdir, *args, timeout=timeout, **kwargs)


def snakemake_jobs(workdir: Path, *targets, env: dict | None = None) -> list[dict]:
    """The jobs of a dry run (every job, as if nothing existed), parsed from `-n -p` output:
    [{rule, outputs, inputs, log, benchmark, resources, wildcards, cmd}]."""
    out = snakemake(workdir, "-n", "-p", "--forceall", "--cores", "1", *targets, env=env).stdout
    jobs, job = [], None
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            job = {"rule": m[1], "inputs": [], "outputs": [], "log": None, "benchmark": None, "resources": {},
                   "wildcards": {}, "cmd": None}
            jobs.append(job)
        elif job is not None and (m := re.match(r"^    (\w+): (.*)$", line)):
            key, value = m[1], m[2]
            if key in ("input", "output"):
                job[f"{key}s"] = value.split(", ")
            elif key in ("log", "benchmark"):
                job[key] = value
            elif key in ("resources", "wildcards"):
                job[key] = dict(item.split("=", 1) for item in value.split(", "))
        elif job is not None and line.startswith("Shell command: "):
            job["cmd"] = line.removeprefix("Shell command: ")
    return [job for job in jobs if job["outputs"]]  # not the target rule `all`


def dvc_stages(workdir: Path) -> list[dict]:
    """DVC's own expansion of dvc.yaml's matrices: [{name, cmd, deps, outs, params}]."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        stages = []
        for stage in repo.index.stages:
            params = [key for d in stage.deps if isinstance(d, ParamsDependency) for key in d.params]
            stages.append({"name": stage.name, "cmd": stage.cmd,
                           "deps": [d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)],
                           "outs": [o.def_path for o in stage.outs], "params": params,
                           "metrics": [o.def_path for o in stage.outs if o.metric],
                           "plots": [o.def_path for o in stage.outs if o.plot]})
    return stages


def dag(nodes: list[tuple[str, frozenset, list[str]]]) -> tuple[dict, set]:
    """(outputs -> command, edges) of jobs given as (command, outputs, input paths); an input that
    is a directory depends on every job with an output inside it."""
    producers = {out: outs for _, outs, _ in nodes for out in outs}
    edges = set()
    for _, outs, inputs in nodes:
        for path in inputs:
            for out, producer in producers.items():
                if out == path or out.startswith(path.rstrip("/") + "/"):
                    edges.add((producer, outs))
    return {outs: cmd for cmd, outs, _ in nodes}, edges


def snakemake_dag(jobs: list[dict]) -> tuple[dict, set]:
    nodes = []
    for job in jobs:
        m = LOG_REDIRECT.match(job["cmd"] or "")
        assert m and m["log"] == job["log"], f"{job['rule']}: expected '<command> > {job['log']} 2>&1': {job['cmd']}"
        nodes.append((" ".join(m["cmd"].split()), frozenset(job["outputs"]), job["inputs"]))
    return dag(nodes)


def dvc_dag(stages: list[dict]) -> tuple[dict, set]:
    return dag([(" ".join(s["cmd"].split()), frozenset(s["outs"]), s["deps"]) for s in stages])


def file_params(workdir: Path):
    """The parameters as the pipeline in `workdir` resolves them: its params.yaml's own profile."""
    from visgoal.config import load_params

    path = workdir / "params.yaml"
    return load_params(path, yaml.safe_load(path.read_text())["profile"])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the DAG ------------------------------------------------------------------------------
def tune_env(workdir: Path, env: str, **sections) -> None:
    """Deep-merge `sections` into envs/<env>.yaml's own tuning (`params:`) in a copy of the pipeline."""
    from visgoal.config import deep_merge

    spec_file = workdir / "envs" / f"{env}.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["params"] = deep_merge(spec.get("params") or {}, sections)
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.parametrize("profile, pixels, learning", [(None, False, ()), ("smoke", False, ()), ("smoke", True, ()),
                                                       ("smoke", False, ("adroit_relocate",))],
                         ids=["params.yaml as is", "smoke in the sections", "smoke, crl and gcbc on pixels",
                              "smoke, relocate's runs learning from demonstrations too"])
def test_snakemake_and_dvc_declare_the_same_dag(tmp_path, profile, pixels, learning):
    """Same jobs (by their output files), the same command per job, the same edges; crl on pixels
    moves from the VAE's training rule to the one without, gcbc on pixels reads no VAE, and an env whose
    demo_learning.enabled is true (its env file: franka_kitchen's, and relocate's where the test turns it
    on) has its runs in the *_demos rules and stages (dvc.yaml regenerated, as its header says)."""
    from visgoal.dvcfile import generate

    work = copy_pipeline(tmp_path / "pipeline", profile=profile,
                         smoke_overrides={"crl": {"representation": "pixels"}, "gcbc": {"representation": "pixels"}}
                         if pixels else None)
    for env in learning:
        tune_env(work, env, demo_learning={"enabled": True})
    if pixels or learning:
        (work / "dvc.yaml").write_text(generate(work / "params.yaml"))
    jobs = snakemake_jobs(work)
    stages = dvc_stages(work)
    sm_commands, sm_edges = snakemake_dag(jobs)
    dvc_commands, dvc_edges = dvc_dag(stages)

    assert len(jobs) == len(sm_commands), "two Snakemake jobs with the same outputs"
    assert set(sm_commands) == set(dvc_commands), (
        f"outputs only in Snakemake: {sorted(map(sorted, set(sm_commands) - set(dvc_commands)))}; "
        f"only in DVC: {sorted(map(sorted, set(dvc_commands) - set(sm_commands)))}")
    for outs, command in sm_commands.items():
        assert command == dvc_commands[outs], (
            f"{sorted(outs)}:\n  snakemake: {command}\n  dvc:       {dvc_commands[outs]}")
    assert sm_edges == dvc_edges

    # The DAG is envs x methods x seeds of the (profile-resolved) params.yaml, and a teacher's demonstrations,
    # evaluation and gcbc (seeds, evaluation) for each env that has one.
    from visgoal.teachers import TEACHERS

    params = file_params(work)
    rules = Counter(job["rule"] for job in jobs)
    from visgoal.config import load_params

    path = work / "params.yaml"  # the envs whose own files (or the tuning above) turn learning on: franka_kitchen's
    learning = {env for env in params["envs"]
                if load_params(path, params.profile, env=env)["demo_learning"]["enabled"]}
    assert set(learning) >= {"franka_kitchen"}
    n_envs, n_seeds, n_learning = len(params["envs"]), len(params["seeds"]), len(learning)
    n_teachers = len([env for env in params["envs"] if env in TEACHERS])
    image = [m for m in params["methods"] if m != "td3"]
    on_pixels = ["crl"] if pixels else []
    td3, latent = n_seeds * ("td3" in params["methods"]), n_seeds * (len(image) - len(on_pixels))
    expected = Counter(dataset=n_envs, train_vae=n_envs, train_td3=(n_envs - n_learning) * td3,
                       train_td3_demos=n_learning * td3, train_image=(n_envs - n_learning) * latent,
                       train_image_demos=n_learning * latent,
                       train_pixels=(n_envs - n_learning) * n_seeds * len(on_pixels),
                       train_pixels_demos=n_learning * n_seeds * len(on_pixels), train_gcbc=n_teachers * n_seeds,
                       evaluate=n_envs * len(params["methods"]) + n_teachers, demos=n_teachers, teacher=n_teachers,
                       report=1)
    assert rules == +expected  # (+ drops zero counts)
    # What reads demos.h5: gcbc's runs and the learning envs' runs, passed as --demos; nothing else but datasets.
    for job in jobs:
        reads = job["rule"] == "train_gcbc" or job["rule"].endswith("_demos")
        demos = f"results/{job['wildcards'].get('env')}/demos.h5"
        assert (demos in job["inputs"] and f"--demos {demos}" in job["cmd"]) == reads, job
        if job["rule"].startswith("train_") and job["rule"] != "train_vae":  # a run of a method
            assert reads == (job["wildcards"]["env"] in learning or job["rule"] == "train_gcbc"), job


def test_dvc_yaml_is_the_generated_one():
    """dvc.yaml is `python -m visgoal dvc-yaml`'s output for params.yaml: no hand edit drifts from the
    results layout (visgoal.paths) or from params.yaml's envs and methods."""
    from visgoal.dvcfile import dvc_yaml, generate

    assert (ROOT / "dvc.yaml").read_text() == generate(ROOT / "params.yaml"), \
        "dvc.yaml is stale: run `python -m visgoal dvc-yaml --out dvc.yaml`"
    report = yaml.safe_load(dvc_yaml(["fetch_reach"], ["td3"], [0], {"td3": "state"}))["stages"]["report"]
    assert report["deps"][1:] == ["results/fetch_reach/td3_eval.csv", "results/fetch_reach/td3_eval.png",
                                  "results/fetch_reach/vae_recon.png"]


GPU_RULES = ("demos", "dataset", "train_vae", "train_td3", "train_image", "train_pixels", "train_td3_demos",
             "train_image_demos", "train_pixels_demos", "train_gcbc", "evaluate", "teacher")  # torch, or pictures


def test_every_rule_declares_log_benchmark_and_resources(tmp_path):
    work = copy_pipeline(tmp_path / "pipeline")
    for job in snakemake_jobs(work):
        assert job["log"] and job["benchmark"], job["rule"]
        assert {"mem_mb", "runtime"} <= set(job["resources"]), (job["rule"], job["resources"])
        if job["rule"] in GPU_RULES:  # `device: auto`: a GPU only where this machine has one
            from visgoal.device import requests_gpu

            assert job["resources"]["gpu"] == str(int(requests_gpu("auto"))), job["rule"]


def test_a_gpu_device_asks_for_a_gpu_for_every_job_that_uses_one(tmp_path):
    """`device: cuda` (a cluster's login node has no GPU itself): one GPU for each job that runs torch or
    renders, none for the report."""
    work = copy_pipeline(tmp_path / "pipeline", smoke_overrides={"crl": {"representation": "pixels"}})
    tune_env(work, "franka_kitchen", demo_learning={"enabled": True})  # every training rule has a job
    raw = yaml.safe_load((work / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump({**raw, "device": "cuda", "profile": "smoke"}, sort_keys=False))
    jobs = snakemake_jobs(work)
    assert {job["rule"] for job in jobs} == {*GPU_RULES, "report"}
    for job in jobs:
        expected = "1" if job["rule"] in GPU_RULES else None
        assert job["resources"].get("gpu") == expected, (job["rule"], job["resources"])


def test_dvc_stages_declare_params_metrics_and_plots(tmp_path):
    """Every params key a stage lists is in params.yaml (else `dvc repro` stops); metrics and
    learning curves are where `dvc metrics show` and `dvc plots show` look."""
    work = copy_pipeline(tmp_path / "pipeline")
    top_level = set(yaml.safe_load((work / "params.yaml").read_text()))
    stages = dvc_stages(work)
    for stage in stages:
        sections = {key.split(".")[0] for key in stage["params"]}  # a section, or one of its keys
        assert "profile" in stage["params"] and sections <= top_level, (stage["name"], stage["params"])
        assert "profiles" not in stage["params"], stage["name"]  # DVC runs the sections, never a profile
        assert "speed" not in stage["params"], stage["name"]  # how fast, never what: it reruns nothing
        # where it ran changes its numbers: every stage but the report's lists the device
        assert ("device" in stage["params"]) == (stage["name"] != "report"), stage["name"]
        # a stage of one environment reads its own tuning (envs/<env>.yaml): a change to it reruns it under DVC too
        env = stage["name"].partition("@")[2].split("-")[0]
        assert (f"envs/{env}.yaml" in stage["deps"]) == (stage["name"] != "report"), stage["name"]
    by_name = {s["name"]: s for s in stages}
    assert by_name["train_vae@fetch_reach"]["metrics"] == ["results/fetch_reach/vae_metrics.json"]
    assert by_name["evaluate@fetch_reach-tdm"]["metrics"] == ["results/fetch_reach/tdm_eval.json"]
    assert {"tdm", "image_agents"} <= set(by_name["train_image@fetch_reach-tdm-0"]["params"])
    assert "rig" not in by_name["train_image@fetch_reach-tdm-0"]["params"]
    # The teachers' envs: their demonstrations, a dataset that reads them (dataset.demo_share > 0), their row.
    assert by_name["demos@franka_kitchen"]["outs"] == ["results/franka_kitchen/demos.h5",
                                                       "results/franka_kitchen/demos.png"]
    assert "results/franka_kitchen/demos.h5" in by_name["dataset_demos@franka_kitchen"]["deps"]
    assert not any("demos.h5" in dep for dep in by_name["dataset@fetch_reach"]["deps"])
    assert by_name["teacher@adroit_relocate"]["metrics"] == ["results/adroit_relocate/teacher_eval.json"]
    assert {"demos", "render"} <= set(by_name["demos@franka_kitchen"]["params"])
    # gcbc, on the teachers' envs alone: its demonstrations in and passed; the sections it reads, not td3's.
    gcbc = by_name["train_gcbc@franka_kitchen-0"]
    assert "results/franka_kitchen/demos.h5" in gcbc["deps"] and "--demos results/franka_kitchen/demos.h5" in gcbc["cmd"]
    assert {"gcbc", "train", "evaluate"} <= set(gcbc["params"]) and not {"td3", "replay", "demo_learning"} & set(
        gcbc["params"])
    assert by_name["evaluate_gcbc@adroit_relocate"]["metrics"] == ["results/adroit_relocate/gcbc_eval.json"]
    assert not [name for name in by_name if "gcbc" in name and "point_maze" in name]
    # The runs that read no demonstrations: as before, but for the switch that would make them read some.
    for name in ("train_td3@adroit_relocate-0", "train_image@adroit_relocate-rig-0"):
        assert not any("demos" in dep for dep in by_name[name]["deps"]) and "--demos" not in by_name[name]["cmd"]
        assert "demo_learning.enabled" in by_name[name]["params"] and "demo_learning" not in by_name[name]["params"]
    # ... and the kitchen's, which learn from them (its env file): demos.h5 in, passed, demo_learning listed.
    for name in ("train_td3_demos@franka_kitchen-0", "train_image_demos@franka_kitchen-rig-0"):
        assert "results/franka_kitchen/demos.h5" in by_name[name]["deps"], name
        assert "--demos results/franka_kitchen/demos.h5" in by_name[name]["cmd"] and "demo_learning" in by_name[name]["params"]
    # A few charts a reader wants, not one per seed: per env, every method and seed together.
    assert not any(s["plots"] for s in stages)
    params = file_params(work)
    charts = {name: chart for entry in yaml.safe_load((work / "dvc.yaml").read_text())["plots"]
              for name, chart in entry.items()}
    assert len(charts) == len(params["envs"]) + 2  # and gcbc's, over its updates
    fetch = charts["fetch_reach: success over env steps"]
    assert fetch["x"] == "env_steps" and set(fetch["y"].values()) == {"eval_success_rate"}
    assert len(fetch["y"]) == len(params["methods"]) * len(params["seeds"])
    curves = {out for s in stages for out in s["outs"] if out.endswith("curve.csv")}
    assert {path for chart in charts.values() for path in chart["y"] if path.endswith("curve.csv")} == curves


def _exp(rev: str, params: dict, metrics: dict, name: str | None = None, experiments=None):
    """An experiment as `Repo.experiments.show()` returns it (metrics: {path: data, or None: not built})."""
    from dvc.repo.experiments.serialize import ExpState, SerializableExp

    data = SerializableExp(rev=rev, params={"params.yaml": {"data": params}},
                           metrics={path: {"data": d} if d else {"error": FileNotFoundError(path)}
                                    for path, d in metrics.items()})
    return ExpState(rev=rev, name=name, data=data, experiments=experiments)


def test_exp_show_and_metrics_show_fit_a_terminal():
    """`visgoal exp-show`: a column per parameter that differs, not one per parameter, dep and metric,
    and a row per evaluation, not its metrics' columns named by their paths; `visgoal metrics-show`:
    only the files that were built, a table per kind, a mean and its std in one column."""
    from dvc.repo.experiments.serialize import ExpRange

    from visgoal.dvcfile import exp_table, metrics_tables

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    evaluation = {"success_rate": 0.6, "success_rate_std": 0.05, "final_distance": 0.04, "final_distance_std": None,
                  "reached_rate": 0.9, "reached_rate_std": 0.02}
    vae = {"val_loss": 80.5, "best_epoch": 20}
    built = {f"results/{env}/{m}_eval.json": evaluation for env in params["envs"] for m in params["methods"]}
    built |= {f"results/{env}/vae_metrics.json": vae for env in params["envs"]}
    metrics = built | {"results/not_built/tdm_eval.json": None}
    changed = {**params, "tdm": {**params["tdm"], "tau_max": 99}}
    experiment = ExpRange(revs=[_exp("b" * 40, changed, metrics, name="exp-tau")], name="exp-tau")
    states = [_exp("workspace", params, metrics), _exp("a" * 40, params, {}, name="main", experiments=[experiment])]

    td = exp_table(states)
    assert td.keys() == ["Experiment", "Created", "tdm.tau_max", "env", "method", "success_rate", "final_distance"]
    n = len(params["envs"]) * len(params["methods"])
    assert len(td) == n + 1 + n  # the workspace's evaluations, main (none: not in Git), the experiment's
    rows = td.as_dict()
    assert rows[0]["tdm.tau_max"] == str(params["tdm"]["tau_max"]) and rows[-n]["tdm.tau_max"] == "99"
    assert rows[0]["success_rate"] == "0.6 ± 0.05" and rows[0]["final_distance"] == "0.04"  # no std: one seed
    narrow = exp_table(states, width=40)  # too narrow for a column per parameter: one column of key=value lines
    assert narrow.keys() == ["Experiment", "Created", "changed params", "env", "method", *td.keys()[-2:]]
    assert narrow.as_dict()[-n]["changed params"] == "tdm.tau_max=99"

    tables = metrics_tables({path: {"data": d} if d else {"error": FileNotFoundError(path)}
                             for path, d in metrics.items()})
    assert [td.keys() for td in tables] == [["env", "best_epoch", "val_loss"],
                                            ["env", "method", "success_rate", "final_distance", "reached_rate"]]
    assert [len(td) for td in tables] == [len(params["envs"]), n]  # not the file never built


def test_dvc_plots_page_loads_nothing_from_a_network():
    """`make setup` fetches the Vega libraries that DVC's own page loads from a CDN, the same versions,
    and writes the page `dvc plots show` fills (plots.html_template, in .dvc/config.local) with them
    inlined: it draws offline."""
    from configobj import ConfigObj
    from dvc_render.vega import VegaRenderer

    cdn = dict(re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+)@([\d.]+)", VegaRenderer.SCRIPTS))
    tarballs = re.search(r"^VEGA_TARBALLS := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    pinned = dict(re.fullmatch(r"\$\(VEGA\)/([\w-]+?)-(\d[\d.]*)\.tgz", t).groups() for t in tarballs)
    assert pinned == cdn, "the Makefile's Vega versions (VEGA_TARBALLS) are not the ones DVC's page names"

    local = ROOT / ".dvc" / "config.local"
    template = ConfigObj(str(local)).get("plots", {}).get("html_template") if local.exists() else None
    assert template, "no offline page for `dvc plots show`: `make setup` writes it"
    page = (ROOT / ".dvc" / template).read_text()  # DVC reads a relative path from .dvc/
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC fills {scripts} with its CDN's <script src>
    assert page.count("</script>") == len(cdn)  # each library in its own <script>, none ending it early
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # the page without the libraries' code
    assert not re.search(r"\b(?:src|href)\s*=", markup, re.I), "the page loads a file"


def test_dry_run_of_one_evaluation_schedules_exactly_its_ancestors(tmp_path):
    """`snakemake -n results/smoke/fetch_reach/tdm_eval.csv` at the smoke profile, from a clean tree."""
    work = copy_pipeline(tmp_path / "pipeline")
    env = tool_env(work, VISGOAL_PROFILE="smoke")
    from visgoal.config import load_params

    seeds = [str(s) for s in load_params(work / "params.yaml", "smoke")["seeds"]]
    jobs = snakemake_jobs(work, "results/smoke/fetch_reach/tdm_eval.csv", env=env)
    assert Counter(j["rule"] for j in jobs) == {"dataset": 1, "train_vae": 1, "train_image": len(seeds), "evaluate": 1}
    assert {j["wildcards"]["env"] for j in jobs} == {"fetch_reach"}
    train = [j for j in jobs if j["rule"] == "train_image"]
    assert {j["wildcards"]["method"] for j in train} == {"tdm"}
    assert sorted(j["wildcards"]["seed"] for j in train) == sorted(seeds)
    # The same without --forceall: what a plain `snakemake -n <target>` says in a clean tree.
    stats = snakemake(work, "-n", "results/smoke/fetch_reach/tdm_eval.csv", env=env).stdout
    assert re.search(r"^total\s+%d$" % (3 + len(seeds)), stats, re.M), stats


def test_a_dataset_with_a_demo_share_reads_the_teachers_demonstrations(tmp_path):
    """franka_kitchen's dataset (dataset.demo_share 0.25 in its env file) waits for its demonstrations;
    fetch_reach's (0) reads none; the teacher's row is its own rule; a teacherless env has neither."""
    work = copy_pipeline(tmp_path / "pipeline")
    env = tool_env(work, VISGOAL_PROFILE="smoke")
    jobs = snakemake_jobs(work, "results/smoke/franka_kitchen/vae_dataset.h5", "results/smoke/fetch_reach/vae_dataset.h5",
                          "results/smoke/adroit_relocate/teacher_eval.csv", env=env)
    assert Counter(j["rule"] for j in jobs) == {"demos": 1, "dataset": 2, "teacher": 1}
    inputs = {j["wildcards"]["env"]: j["inputs"] for j in jobs if j["rule"] == "dataset"}
    assert "results/smoke/franka_kitchen/demos.h5" in inputs["franka_kitchen"]
    assert not any("demos" in path for path in inputs["fetch_reach"])
    teacher = next(j for j in jobs if j["rule"] == "teacher")
    assert LOG_REDIRECT.match(teacher["cmd"])["cmd"] == ("python -m visgoal evaluate --env adroit_relocate --method "
                                                         "teacher --out results/smoke/adroit_relocate/teacher_eval.csv "
                                                         "--quiet")
    result = snakemake(work, "-n", "results/smoke/point_maze/demos.h5", env=env, check=False)
    assert result.returncode != 0  # point_maze has no teacher: no rule makes its demonstrations


@pytest.mark.parametrize("representation", ["pixels", "latent"])
def test_gcbc_learns_from_a_teachers_demonstrations_and_only_where_there_are_some(tmp_path, representation):
    """`snakemake -n results/smoke/franka_kitchen/gcbc_eval.csv`: the demonstrations, gcbc's seeds and its
    evaluation, and on latents the dataset and the VAE too; an env without a teacher is refused in one line."""
    from visgoal.config import load_params

    latent = representation == "latent"
    work = copy_pipeline(tmp_path / "pipeline", smoke_overrides={"gcbc": {"representation": representation}})
    env = tool_env(work, VISGOAL_PROFILE="smoke")
    seeds = load_params(work / "params.yaml", "smoke")["seeds"]
    jobs = snakemake_jobs(work, "results/smoke/franka_kitchen/gcbc_eval.csv", env=env)
    assert Counter(j["rule"] for j in jobs) == {"demos": 1, "train_gcbc": len(seeds), "evaluate": 1,
                                                **({"dataset": 1, "train_vae": 1} if latent else {})}
    train = next(j for j in jobs if j["rule"] == "train_gcbc" and j["wildcards"]["seed"] == str(seeds[0]))
    kitchen = "results/smoke/franka_kitchen"
    assert f"{kitchen}/demos.h5" in train["inputs"]
    vae = f"--vae {kitchen}/vae.pt --dataset {kitchen}/vae_dataset.h5 " if latent else ""
    assert LOG_REDIRECT.match(train["cmd"])["cmd"] == (
        f"python -m visgoal train --env franka_kitchen --method gcbc --seed {seeds[0]} {vae}"
        f"--demos {kitchen}/demos.h5 --out {kitchen}/gcbc/seed{seeds[0]} --quiet")
    result = snakemake(work, "-n", "results/smoke/point_maze/gcbc_eval.csv", env=env, check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "no scripted teacher" in line]
    assert result.returncode != 0 and len(errors) == 1 and "point_maze" in errors[0], result.stdout + result.stderr


def test_an_env_file_that_changes_what_a_method_sees_is_refused_in_one_line(tmp_path):
    """The DAG picks each method's training rule from params.yaml for every env: an env file that makes
    gcbc read latents where params.yaml has pixels fails in one line, in Snakemake and in dvc.yaml's
    generator alike, naming the env file and the fix, rather than running it through the wrong rule."""
    from visgoal.config import ConfigError
    from visgoal.dvcfile import generate

    work = copy_pipeline(tmp_path / "pipeline")
    tune_env(work, "franka_kitchen", gcbc={"representation": "latent"})
    result = snakemake(work, "-n", "results/franka_kitchen/gcbc_eval.csv", env=tool_env(work), check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "envs/franka_kitchen.yaml makes" in line]
    assert result.returncode != 0 and len(errors) == 1 and "set it there" in errors[0], result.stdout + result.stderr
    with pytest.raises(ConfigError, match=r"envs/franka_kitchen.yaml makes gcbc see latent, params.yaml pixels"):
        generate(work / "params.yaml")


def test_runs_that_learn_from_demonstrations_read_them_and_the_others_are_unchanged(tmp_path):
    """demo_learning.enabled in adroit_relocate's env file (franka_kitchen's has it already): its td3 and
    rig runs read its demos.h5 (input, --demos, the demos job before them); fetch_reach's run is the same
    job as before, and so were relocate's before the switch."""
    work = copy_pipeline(tmp_path / "pipeline")
    env = tool_env(work, VISGOAL_PROFILE="smoke")
    kitchen, fetch = "results/smoke/adroit_relocate", "results/smoke/fetch_reach/td3/seed0/policy.pt"
    targets = [f"{kitchen}/td3/seed0/policy.pt", f"{kitchen}/rig/seed0/policy.pt", fetch]
    before = {j["outputs"][0]: j for j in snakemake_jobs(work, *targets, env=env)}
    tune_env(work, "adroit_relocate", demo_learning={"enabled": True})
    after = {j["outputs"][0]: j for j in snakemake_jobs(work, *targets, env=env)}

    assert after[fetch] == before[fetch]
    assert [before[t]["rule"] for t in targets] == ["train_td3", "train_image", "train_td3"]
    assert not any("demos" in path for t in targets for path in before[t]["inputs"])
    assert [after[t]["rule"] for t in targets] == ["train_td3_demos", "train_image_demos", "train_td3"]
    for target in targets[:2]:
        job = after[target]
        assert f"{kitchen}/demos.h5" in job["inputs"]
        assert LOG_REDIRECT.match(job["cmd"])["cmd"] == LOG_REDIRECT.match(before[target]["cmd"])["cmd"].replace(
            " --out", f" --demos {kitchen}/demos.h5 --out")
    assert f"{kitchen}/demos.h5" in after[f"{kitchen}/demos.h5"]["outputs"]  # the demos job, scheduled first


def test_each_profile_has_its_own_results(tmp_path):
    """Running one profile never reruns nor overwrites another's jobs: their DAGs share no output,
    log or benchmark file; smoke and paper live in results/<profile>/, the default in results/."""
    work = copy_pipeline(tmp_path / "pipeline")
    files = {}
    for profile in ("default", "smoke", "paper"):
        jobs = snakemake_jobs(work, env=tool_env(work, VISGOAL_PROFILE=profile))
        files[profile] = {path for job in jobs for path in (*job["outputs"], job["log"], job["benchmark"])}
    for profile in ("smoke", "paper"):
        assert all(path.startswith(f"results/{profile}/") for path in files[profile]), profile
    assert not [path for path in files["default"] if path.startswith(("results/smoke/", "results/paper/"))]
    assert "results/fetch_reach/tdm_eval.csv" in files["default"]  # the README's and `make run`'s target


def test_dvc_refuses_a_profile_in_one_line(tmp_path):
    """`profile: smoke` under DVC: the stage fails at once with the fix, and writes nothing."""
    work = copy_pipeline(tmp_path / "pipeline", with_source=True)
    params = yaml.safe_load((work / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump({**params, "profile": "smoke"}, sort_keys=False))
    result = dvc(work, "repro", "dataset@point_maze", check=False, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    errors = [line for line in output.splitlines() if "visgoal dataset: error:" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert "profile 'smoke' overrides" in errors[0] and "VISGOAL_PROFILE=smoke snakemake" in errors[0]
    assert not list((work / "results").rglob("*.h5*")) if (work / "results").exists() else True


def test_snakemake_lint_is_clean(tmp_path):
    work = copy_pipeline(tmp_path / "pipeline")
    result = snakemake(work, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_conda_env_pins_what_pyproject_pins():
    """workflow/envs/visgoal.yaml (the rules' `conda:`) is the project's pinned dependencies."""
    conda = yaml.safe_load((ROOT / "workflow" / "envs" / "visgoal.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(pip) == sorted(project["dependencies"])
    python = project["requires-python"]  # ">=3.11,<3.12"
    assert "python=3.11" in conda["dependencies"] and python == ">=3.11,<3.12"
    assert (ROOT / "workflow" / "envs" / "visgoal.post-deploy.sh").is_file()


def test_slurm_profile():
    config = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert config["executor"] == "slurm"
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(config["default-resources"])
    assert config["rerun-incomplete"] is True and config["retries"] >= 1
    assert config["latency-wait"] > 0 and config["jobs"] > 0


# --- end to end (minutes) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """The whole smoke DAG twice from scratch: by `snakemake --cores 2` and, at the same time, by
    `dvc repro` (one job at a time) in a second directory."""
    base = tmp_path_factory.mktemp("e2e")
    sm_dir = copy_pipeline(base / "snakemake", profile="smoke", with_source=True)
    dvc_dir = copy_pipeline(base / "dvc", profile="smoke", with_source=True)
    # DVC builds a subset of the environments (a third of the fixture's cost): its DAG is tested whole
    # by test_snakemake_and_dvc_declare_the_same_dag, and the bytes are compared on what both build.
    params = yaml.safe_load((dvc_dir / "params.yaml").read_text())
    params["envs"] = list(DVC_ENVS)
    (dvc_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    from visgoal.dvcfile import generate

    (dvc_dir / "dvc.yaml").write_text(generate(dvc_dir / "params.yaml"))  # the report's inputs, per env
    # Snakemake gives each job OMP_NUM_THREADS=<its threads>; DVC does not: give every DVC stage
    # train_vae's 2 (the others pin one torch thread), so that float reductions are the same.
    dvc_env = tool_env(dvc_dir, OMP_NUM_THREADS="2")
    started = time.monotonic()
    with open(base / "dvc-repro.log", "w") as log:  # a file, not a pipe nobody reads while Snakemake runs
        dvc_run = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=dvc_dir, env=dvc_env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            snakemake(sm_dir, "--cores", "2", timeout=3600)
            sm_seconds = time.monotonic() - started
            dvc_run.wait(timeout=3600)
        finally:
            if dvc_run.poll() is None:
                dvc_run.terminate()
                dvc_run.wait()
    assert dvc_run.returncode == 0, f"dvc repro:\n{(base / 'dvc-repro.log').read_text()[-6000:]}"
    print(f"snakemake --cores 2: {sm_seconds:.0f} s; both runs: {time.monotonic() - started:.0f} s")
    return {"snakemake": sm_dir, "dvc": dvc_dir, "dvc_env": dvc_env}


@E2E
def test_smoke_dag_builds_everything(smoke_runs):
    work = smoke_runs["snakemake"]
    jobs = snakemake_jobs(work)
    outputs = {out for job in jobs for out in job["outputs"]}
    assert not [out for out in sorted(outputs) if not (work / out).is_file()]
    for name in ("curves.png", "final.png", "vae_recon.png", "frames.png", "summary.csv", "summary.md"):
        assert (work / "results" / "report" / name).stat().st_size > 0
    summary = read_csv(work / "results" / "report" / "summary.csv")
    params = file_params(work)
    from visgoal.teachers import TEACHERS

    assert {(r["env"], r["method"]) for r in summary} == ({(e, m) for e in params["envs"] for m in params["methods"]}
                                                          | {(e, m) for e in params["envs"] if e in TEACHERS
                                                             for m in ("gcbc", "teacher")})
    # The image agents, on every environment: true and latent distance side by side.
    for env in params["envs"]:
        for method in ("rig", "tdm"):
            rows = read_csv(work / "results" / env / f"{method}_eval.csv")
            assert rows and all(float(r["latent_distance"]) >= 0 for r in rows), (env, method)
            curve = read_csv(work / "results" / env / method / "seed0" / "curve.csv")
            assert all(float(r["eval_latent_distance"]) >= 0 for r in curve), (env, method)


@E2E
def test_runs_from_scratch_give_identical_datasets_and_evaluations(smoke_runs):
    """Snakemake in one directory, DVC in another: the same bytes."""
    a, b = smoke_runs["snakemake"], smoke_runs["dvc"]
    params = file_params(b)
    assert params["envs"] == list(DVC_ENVS)
    different = []
    for env in params["envs"]:
        files = [f"results/{env}/vae_dataset.h5"] + [f"results/{env}/{m}_eval.{ext}" for m in params["methods"]
                                                    for ext in ("csv", "json")]
        different += [f for f in files if not filecmp.cmp(a / f, b / f, shallow=False)]
    # The report over all environments and the report over DVC's subset agree row for row on the subset.
    summary = [r for r in read_csv(a / "results" / "report" / "summary.csv") if r["env"] in DVC_ENVS]
    assert summary == read_csv(b / "results" / "report" / "summary.csv")
    assert not different, f"differ between the two runs: {different}"


@E2E
def test_dvc_repro_after_a_full_run_changes_nothing(smoke_runs):
    work, env = smoke_runs["dvc"], smoke_runs["dvc_env"]
    lock = (work / "dvc.lock").read_text()
    hashes = {out["path"]: out["md5"] for stage in yaml.safe_load(lock)["stages"].values()
              for out in stage.get("outs", [])}
    result = dvc(work, "repro", env=env)
    assert "Running stage" not in result.stdout, result.stdout
    assert json.loads(dvc(work, "status", "--json", env=env).stdout) == {}
    assert (work / "dvc.lock").read_text() == lock
    from visgoal.tracking import file_hash

    assert {path: file_hash(work / path) for path in hashes} == hashes


@E2E
def test_git_does_not_ignore_dvc_lock():
    """DVC refuses to read or write a dvc.lock that Git ignores (FileIsGitIgnored): `make run`'s record
    of what it built would then fail at the very end, in a clone (the copies above have no Git)."""
    result = subprocess.run(["git", "check-ignore", "-q", "dvc.lock"], cwd=ROOT, capture_output=True)
    assert result.returncode == 1, "Git ignores dvc.lock: take it out of .gitignore"


def test_dvc_records_what_snakemake_built_and_a_changed_parameter_reruns_its_readers(smoke_runs):
    """Right after the Snakemake run, `dvc status` says everything is up to date (its onsuccess wrote
    dvc.lock); a changed parameter then lists exactly the stages that read its section."""
    work = smoke_runs["snakemake"]
    env = tool_env(work)
    assert json.loads(dvc(work, "status", "--json", env=env).stdout) == {}
    text = (work / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["evaluate"]["picture_episodes"] += 1
    try:
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(dvc(work, "status", "--json", env=env).stdout))
    finally:
        (work / "params.yaml").write_text(text)
    readers = {stage["name"] for stage in dvc_stages(work) if "evaluate" in stage["params"]}
    assert readers and changed == readers, (sorted(changed ^ readers))


@E2E
def test_sigterm_during_training_then_rerun_finishes(tmp_path):
    """SIGTERM to Snakemake's process group while a td3 run trains; the rerun resumes it."""
    from visgoal.agents import load_policy

    env_name = "point_maze"
    # A longer smoke run, so that it is still training after its first checkpoint.
    work = copy_pipeline(tmp_path / "pipeline", profile="smoke",
                         smoke_overrides={"train": {"total_steps": 1200, "checkpoint_every": 150}})
    run_dir = work / "results" / env_name / "td3" / "seed0"
    target = f"results/{env_name}/td3_eval.csv"
    proc = subprocess.Popen([str(BIN / "snakemake"), target, "--cores", "1"], cwd=work, env=tool_env(work),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoint.pt").is_file():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        assert not (run_dir / "policy.pt").exists(), "training finished before the signal"
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, output
    assert not (work / target).exists() and not (run_dir / "policy.pt").exists()

    rerun = snakemake(work, target, "--cores", "1", timeout=600)
    log = (work / "results" / "logs" / env_name / "td3" / "train_seed0.log").read_text()
    assert "resumed" in log, log[-2000:]
    curve = read_csv(run_dir / "curve.csv")
    assert [int(r["env_steps"]) for r in curve][-1] == 1200
    assert all(0.0 <= float(r["eval_success_rate"]) <= 1.0 for r in curve)
    assert load_policy(run_dir)[2]["env_steps"] == 1200
    rows = read_csv(work / target)
    assert len(rows) == 2 and {r["seed"] for r in rows} == {"0"}, rerun.stdout  # smoke: 2 episodes, seed 0
    assert not list(run_dir.glob(".*.tmp-*")), "a temporary file was left behind"


@E2E
def test_changed_params_retrain_from_scratch(tmp_path):
    """A changed td3 parameter reruns training (Snakemake's params trigger), from scratch; a
    changed `speed` section reruns nothing, since it changes no file."""
    work = copy_pipeline(tmp_path / "pipeline", profile="smoke")
    target = "results/point_maze/td3_eval.csv"
    snakemake(work, target, "--cores", "1", timeout=600)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["speed"] = {"update_thread": not params["speed"]["update_thread"], "processes": 3}
    params["profiles"]["smoke"]["speed"] = {"processes": 2}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "Nothing to be done" in snakemake(work, "-n", target).stdout
    params["td3"]["actor_lr"] = 0.0005
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dry = snakemake(work, "-n", target).stdout
    assert re.search(r"^train_td3\s+1$", dry, re.M) and re.search(r"^evaluate\s+1$", dry, re.M), dry
    snakemake(work, target, "--cores", "1", timeout=600)
    log = (work / "results" / "logs" / "point_maze" / "td3" / "train_seed0.log").read_text()
    assert "resumed" not in log
    assert (work / "results" / "point_maze" / "td3" / "seed0" / "curve.csv").is_file()
    # An environment's own tuning (envs/<env>.yaml's `params:`) reruns that environment's jobs, not another's.
    for env in ("fetch_reach", "point_maze"):
        spec = yaml.safe_load((work / "envs" / f"{env}.yaml").read_text())
        spec.setdefault("params", {})["td3"] = {"actor_lr": 0.0007}
        (work / "envs" / f"{env}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        if env == "fetch_reach":
            assert "Nothing to be done" in snakemake(work, "-n", target).stdout
    dry = snakemake(work, "-n", target).stdout
    assert re.search(r"^train_td3\s+1$", dry, re.M) and re.search(r"^evaluate\s+1$", dry, re.M), dry
