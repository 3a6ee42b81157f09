"""Image agents vs the state-based baseline, on the evaluation protocol's true distances.

    python benchmarks/image_agents.py --envs fetch_reach point_maze --methods td3 rig tdm \
        --seeds 0 1 2 --steps 25000 50000 --jobs 2 --results bench

Each (env, method, seed) trains to the first milestone, is evaluated by the protocol
(`visgoal evaluate`, all `evaluate.episodes` fixed episodes), then resumes from its
checkpoint to the next milestone, and so on. Image methods use <results>/<env>/vae.pt
(made with `visgoal dataset` and `visgoal train-vae` first if missing). Extra
`--set key=value` pairs go to every training run (ablations). A method `crl:pixels` is crl
with `crl.representation=pixels` (no VAE), in its own folder `crl-pixels`. A milestone already
evaluated is not run again, so a killed benchmark started again goes on where it stopped.
Prints one markdown row per (env, method, milestone): success and final distance, mean and
std over seeds, the share of episodes that reached the goal at any step (the protocol's
`reached` diagnostic: above success, the policy passes through its goals), and the training
wall-clock.
"""

from __future__ import annotations

import argparse
import csv
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch


RUNNING: set[subprocess.Popen] = set()  # the sub-commands under way, which a SIGTERM here stops too


def stop_running(signum: int, frame) -> None:
    """SIGTERM stops every sub-command (each keeps its checkpoint, so a rerun resumes), then this."""
    for child in list(RUNNING):
        child.terminate()
    sys.exit(128 + signum)


def visgoal(*args: str, log: Path) -> float:
    """Run a visgoal sub-command, appending its output to `log`; returns its wall-clock seconds."""
    started = time.monotonic()
    with open(log, "a") as f, subprocess.Popen([sys.executable, "-m", "visgoal", *args, "--quiet"], stdout=f,
                                               stderr=subprocess.STDOUT) as done:
        RUNNING.add(done)
        try:
            done.wait()
        finally:
            RUNNING.discard(done)
    if done.returncode:
        errors = [line for line in log.read_text().splitlines() if "error" in line.lower()]
        sys.exit(f"visgoal {args[0]} failed ({log}): {errors[-1] if errors else 'see the log'}")
    return time.monotonic() - started


def ensure_vae(env: str, results: Path) -> None:
    out = results / env
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "vae.pt").is_file():
        visgoal("dataset", "--env", env, "--out", str(out / "vae_dataset.h5"), log=out / "vae.log")
        visgoal("train-vae", "--env", env, "--dataset", str(out / "vae_dataset.h5"), "--out", str(out / "vae.pt"),
                log=out / "vae.log")


def variant(spec: str) -> tuple[str, str, list[str]]:
    """'crl:pixels' -> (its folder 'crl-pixels', the method 'crl', ['crl.representation=pixels'])."""
    method, _, representation = spec.partition(":")
    if not representation:
        return method, method, []
    return f"{method}-{representation}", method, [f"{method}.representation={representation}"]


def run(env: str, spec: str, seed: int, milestones: list[int], results: Path, sets: list[str]) -> list[dict]:
    label, method, own = variant(spec)
    runs = results / env / label
    out = runs / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    image = ["--vae", str(results / env / "vae.pt"), "--dataset", str(results / env / "vae_dataset.h5")]
    sets = [*own, *sets]
    rows, train_seconds = [], 0.0
    for steps in milestones:
        csv_path = runs / f"eval_seed{seed}_{steps}.csv"
        if csv_path.is_file():  # done before this benchmark was stopped: its training time from the curve
            with open(out / "curve.csv") as f:
                train_seconds = max(float(r["wall_clock_s"]) for r in csv.DictReader(f) if int(r["env_steps"]) <= steps)
        else:
            train_seconds += visgoal("train", "--env", env, "--method", method, "--seed", str(seed), "--out", str(out),
                                     "--set", f"train.total_steps={steps}", *[a for s in sets for a in ("--set", s)],
                                     *(image if method != "td3" and not own else []), log=out / "bench.log")
            reached = torch.load(out / "policy.pt", weights_only=True)["meta"]["env_steps"]
            if reached != steps:  # a run resumed from a later checkpoint: its policy is not this milestone's
                sys.exit(f"{out} is at {reached} env steps, past the milestone {steps}; use a new --results folder")
            visgoal("evaluate", "--env", env, "--method", method, "--seeds", str(seed), "--runs", str(runs),
                    "--out", str(csv_path), log=out / "bench.log")
        with open(csv_path) as f:
            episodes = list(csv.DictReader(f))
        rows.append({"env": env, "method": spec, "seed": seed, "steps": steps, "train_s": train_seconds,
                     "success": np.mean([r["success"] == "True" for r in episodes]),
                     # NaN for an evaluation written before the `reached` column
                     "reached": np.mean([r["reached"] == "True" if "reached" in r else np.nan for r in episodes]),
                     "final_distance": np.mean([float(r["final_distance"]) for r in episodes])})
        print(f"{env} {spec} seed {seed} @ {steps}: success {rows[-1]['success']:.2f} (reached "
              f"{rows[-1]['reached']:.2f}), final distance {rows[-1]['final_distance']:.3f}, {train_seconds:.0f} s",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["fetch_reach"])
    parser.add_argument("--methods", nargs="+", default=["td3", "rig", "tdm"], help="td3, rig, tdm, crl, crl:pixels")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", nargs="+", type=int, default=[25000, 50000], help="evaluation milestones")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    parser.add_argument("--results", type=Path, default=Path("bench"))
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value for every training run")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, stop_running)

    for env in args.envs:
        if any(m != "td3" and not variant(m)[2] for m in args.methods):
            ensure_vae(env, args.results)
    jobs = [(env, method, seed) for env in args.envs for method in args.methods for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [r for rs in pool.map(lambda j: run(*j, sorted(args.steps), args.results, args.sets), jobs) for r in rs]

    print("\n| env | method | env steps | success (mean ± std) | reached at any step | final distance "
          "| train wall-clock per seed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for env in args.envs:
        for method in args.methods:
            for steps in sorted(args.steps):
                group = [r for r in rows if (r["env"], r["method"], r["steps"]) == (env, method, steps)]
                success = np.array([r["success"] for r in group])
                reached = np.array([r["reached"] for r in group])
                distance = np.array([r["final_distance"] for r in group])
                seconds = np.array([r["train_s"] for r in group])
                print(f"| {env} | {method} | {steps} | {success.mean():.2f} ± {success.std():.2f} | "
                      f"{reached.mean():.2f} | {distance.mean():.3f} ± {distance.std():.3f} | "
                      f"{seconds.mean() / 60:.1f} min |")


if __name__ == "__main__":
    main()
