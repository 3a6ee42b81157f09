"""Where the pipeline's time goes, and how near the agents' loop is to its limit.

    python benchmarks/pipeline_speed.py --results results            # per stage, from a finished run
    python benchmarks/pipeline_speed.py --agent fetch_reach tdm \\
        --vae results/fetch_reach/vae.pt --steps 3000                 # the agent loop against its limit

`--results` reads the `benchmark:` files Snakemake writes (results/benchmarks/) and prints each
stage's wall-clock and CPU time. `--agent ENV METHOD` trains one seed for `--steps` env steps
with the default profile (evaluations included, as `train` runs them), then, in the same
process, runs the loop that only steps the simulator, renders and encodes (no learning, no
evaluation): the limit proxy. It prints both rates and their ratio, and the share of the
training run spent in evaluations (`--profile-top N` adds cProfile's top N functions).
`--table ENV ...` prints one row per environment: the simulator's raw step rate, the same with
its 64x64 picture rendered, and the training rates of the state oracle (td3) and of crl on pixels,
each past its random warm-up and without its evaluations (`--steps` for td3, a fifth of it for crl).
`--serial-too` trains a second time with the updates on the loop's own thread
(`speed.update_thread=false`) and prints it beside the first; `--also KEY=VALUE` trains once more
with that parameter (e.g. `train.update_every=2`), and `--set KEY=VALUE` changes every run
(e.g. `crl.representation=pixels`). `--processes ENV [RUNS]` makes
ENV's dataset, and evaluates the seeds in RUNS (a results/<env>/<method> folder) if given, with
`speed.processes` 1 and 2, one after the other, and prints their wall-clock side by side, and
whether the files are the same bytes.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np


def stage_times(results: Path) -> None:
    files = sorted((results / "benchmarks").rglob("*.tsv"))
    if not files:
        raise SystemExit(f"{results}/benchmarks: no Snakemake benchmark files; run the pipeline first")
    print(f"{'stage':<48} {'wall s':>8} {'cpu s':>8}")
    total = 0.0
    for path in files:
        with open(path) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        wall, cpu = float(row["s"]), float(row.get("cpu_time") or "nan")
        total += wall
        print(f"{str(path.relative_to(results / 'benchmarks').with_suffix('')):<48} {wall:>8.1f} {cpu:>8.1f}")
    print(f"{'sum of stages (jobs run in parallel overlap)':<48} {total:>8.1f}")


def train_loop(env: str, method: str, vae: Path | None, dataset: Path | None, steps: int, top: int,
               overrides: list[str]):
    """Train one seed for `steps` env steps; return (env steps/s, seconds in evaluations, seconds, view, profile)."""
    from visgoal.agents.workspace import Workspace
    from visgoal.config import load_params

    params = load_params(profile="default", overrides=[f"train.total_steps={steps}", *overrides])
    with tempfile.TemporaryDirectory() as out:
        workspace = Workspace(env, method, 0, Path(out), params, vae, dataset, progress=False)
        evaluating = 0.0
        evaluate = workspace.evaluate

        def timed_evaluate():
            nonlocal evaluating
            start = time.perf_counter()
            evaluate()
            evaluating += time.perf_counter() - start

        workspace.evaluate = timed_evaluate
        profiler = cProfile.Profile() if top else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        workspace.run()
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - start
        view = workspace.view
        workspace.close()
    return steps / seconds, evaluating, seconds, view, params, profiler


def agent_loop(env: str, method: str, vae: Path | None, dataset: Path | None, steps: int, top: int,
               serial_too: bool, sets: list[str], also: list[str]) -> None:
    import torch

    from visgoal.agents.views import LatentView
    from visgoal.envs import make_env

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp()}/mlflow.db")
    first = "updates on a second thread" if serial_too else "as set"
    runs = {first: train_loop(env, method, vae, dataset, steps, top, sets)}
    if serial_too:
        runs["updates on the loop's thread"] = train_loop(env, method, vae, dataset, steps, 0,
                                                          [*sets, "speed.update_thread=false"])
    for override in also:
        runs[override] = train_loop(env, method, vae, dataset, steps, 0, [*sets, override])
    _, _, _, view, params, profiler = runs[first]

    torch.set_num_threads(1)
    render = method != "td3"
    with make_env(env, image_size=params["render"]["image_size"], render_images=render) as e:
        rng = np.random.default_rng(0)
        step = e.reset(seed=0)
        view.reset()
        start = time.perf_counter()
        for _ in range(steps):
            step = e.step(rng.uniform(e.action_space.low, e.action_space.high))
            view.observe(step)
            if step.terminated or step.truncated:
                step = e.reset()
                view.reset()
        proxy = steps / (time.perf_counter() - start)
    what = "render and encode" if isinstance(view, LatentView) else "simulate and render" if render else "simulate only"
    print(f"{env}/{method}, {steps} env steps (default profile{''.join(', ' + o for o in sets)}, evaluations included):")
    print(f"  {'':<36} {'env steps/s':>11} {'ratio':>6} {'evaluations':>12}")
    for name, (rate, evaluating, seconds, *_) in runs.items():
        print(f"  {'training, ' + name:<36} {rate:11.1f} {rate / proxy:6.2f} {evaluating / seconds:12.1%}")
    print(f"  {'limit proxy':<36} {proxy:11.1f} {1:6.2f}   (step, {what}; no learning, no evaluation)")
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        print(text.getvalue())


def env_rate(env: str, steps: int, render: bool) -> float:
    """Env steps/s under uniform random actions: the simulator alone, or with its picture too."""
    from visgoal.config import load_params
    from visgoal.envs import make_env

    size = load_params(profile="default")["render"]["image_size"]
    with make_env(env, image_size=size, render_images=render) as e:
        rng = np.random.default_rng(0)
        e.reset(seed=0)
        start = time.perf_counter()
        for _ in range(steps):
            step = e.step(rng.uniform(e.action_space.low, e.action_space.high))
            if step.terminated or step.truncated:
                e.reset()
        return steps / (time.perf_counter() - start)


def learning_rate(env: str, method: str, steps: int, sets: list[str]) -> float:
    """Env steps/s of a training run past its warm-up (100 random steps) and without evaluations."""
    overrides = ["train.learning_starts=100", f"train.eval_every={10 * steps}", *sets]
    rate, evaluating, seconds, *_ = train_loop(env, method, None, None, steps, 0, overrides)
    return steps / (seconds - evaluating)


def env_table(envs: list[str], steps: int) -> None:
    import torch

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp()}/mlflow.db")
    torch.set_num_threads(1)
    print(f"env steps/s, default profile, one thread; td3 {steps} env steps, crl on pixels {steps // 5}")
    print(f"{'env':<18} {'simulate':>9} {'+ picture':>10} {'td3 (state)':>12} {'crl (pixels)':>13}")
    for env in envs:
        row = [env_rate(env, steps, False), env_rate(env, steps, True), learning_rate(env, "td3", steps, []),
               learning_rate(env, "crl", steps // 5, ["crl.representation=pixels"])]
        print(f"{env:<18} {row[0]:>9.1f} {row[1]:>10.1f} {row[2]:>12.1f} {row[3]:>13.1f}", flush=True)


def stage_processes(env: str, runs: Path | None) -> None:
    """The dataset (and evaluate, on `runs`) with one process and with two: seconds, same bytes."""
    import subprocess
    import sys

    jobs = [("dataset", ["dataset", "--env", env], [".h5"])]
    if runs:
        jobs.append(("evaluate", ["evaluate", "--env", env, "--method", runs.name, "--runs", str(runs)],
                     [".csv", ".json", ".png"]))
    print(f"{'stage':<10} {'1 process s':>12} {'2 processes s':>14} {'speed-up':>9}  same bytes")
    with tempfile.TemporaryDirectory() as tmp:
        for stage, command, suffixes in jobs:
            seconds, files = [], []
            for n in (1, 2):
                out = Path(tmp) / f"{stage}{n}" / ("vae_dataset.h5" if stage == "dataset" else "eval.csv")
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "visgoal", *command, "--out", str(out), "--quiet",
                                "--set", f"speed.processes={n}"], check=True, capture_output=True)
                seconds.append(time.perf_counter() - start)
                files.append([out.with_suffix(suffix).read_bytes() for suffix in suffixes])
            print(f"{stage:<10} {seconds[0]:>12.1f} {seconds[1]:>14.1f} {seconds[0] / seconds[1]:>8.2f}x  "
                  f"{'yes' if files[0] == files[1] else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="a results folder with Snakemake's benchmarks/")
    parser.add_argument("--agent", nargs=2, metavar=("ENV", "METHOD"), help="measure one agent's loop")
    parser.add_argument("--vae", type=Path, default=None, help="the image agents' VAE (default: results/<env>/vae.pt)")
    parser.add_argument("--dataset", type=Path, default=None, help="its dataset (for fine-tuning, if on)")
    parser.add_argument("--steps", type=int, default=3000, help="env steps of the agent loop and of the proxy")
    parser.add_argument("--profile-top", type=int, default=0, help="print cProfile's top N functions")
    parser.add_argument("--serial-too", action="store_true",
                        help="also train with the updates on the loop's thread (speed.update_thread=false)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of every --agent run (e.g. crl.representation=pixels)")
    parser.add_argument("--also", action="append", default=[], metavar="KEY=VALUE",
                        help="train once more with this parameter, printed beside the first (repeatable)")
    parser.add_argument("--table", nargs="+", metavar="ENV", help="one row of rates per environment")
    parser.add_argument("--processes", nargs="+", metavar=("ENV", "RUNS"),
                        help="the dataset (and evaluate on RUNS) with one process and with two")
    args = parser.parse_args()
    if not (args.results or args.agent or args.processes or args.table):
        parser.error("give --results, --agent, --table or --processes")
    if args.results:
        stage_times(args.results)
    if args.agent:
        agent_loop(*args.agent, args.vae, args.dataset, args.steps, args.profile_top, args.serial_too, args.sets, args.also)
    if args.table:
        env_table(args.table, args.steps)
    if args.processes:
        stage_processes(args.processes[0], Path(args.processes[1]) if len(args.processes) > 1 else None)


if __name__ == "__main__":
    main()
