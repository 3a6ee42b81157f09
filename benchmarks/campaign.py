"""Methods x environments x seeds at several budgets, on the evaluation protocol: prints one table.

    python benchmarks/campaign.py --envs fetch_reach point_maze --methods crl crl:pixels tdm \\
        --seeds 0 1 2 --budgets 25000 50000 --root ../campaign --jobs 2

Each run trains to the first budget, is evaluated on the protocol (`evaluate`, its 50 fixed
episodes), then resumes from its checkpoint to the next budget, and so on: one run per seed,
whatever the number of budgets. Everything goes through `python -m visgoal`, so a killed
campaign started again resumes every run where its last checkpoint left it, and skips the
evaluations it already has. `method:pixels` is crl with `crl.representation=pixels`. Image
agents on latents read `<results>/<env>/vae.pt` and its dataset, made first if missing.
`--set` passes parameters to every run (they become part of each run's fingerprint).

Columns: success rate and final distance (mean and std over seeds of each seed's mean over the
protocol's episodes, in the env's unit), and each run's wall-clock to that budget (from its
curve.csv: training and its evaluations, without the protocol's).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def visgoal(*args: str, log: Path) -> None:
    """`python -m visgoal ...`, its output appended to `log`; a failure stops the campaign's job."""
    with open(log, "a") as out:
        result = subprocess.run([sys.executable, "-m", "visgoal", *args, "--quiet"], stdout=out, stderr=out)
    if result.returncode:
        raise RuntimeError(f"`visgoal {' '.join(args)}` failed; see {log}")


def variant(spec: str) -> tuple[str, str, list[str]]:
    """'crl:pixels' -> (label 'crl-pixels', method 'crl', its --set)."""
    method, _, representation = spec.partition(":")
    if not representation:
        return method, method, []
    return f"{method}-{representation}", method, ["--set", f"{method}.representation={representation}"]


def prepare_vae(env: str, results: Path, settings: list[str], log: Path) -> None:
    dataset, vae = results / env / "vae_dataset.h5", results / env / "vae.pt"
    if not dataset.is_file():
        visgoal("dataset", "--env", env, "--out", str(dataset), *settings, log=log)
    if not vae.is_file():
        visgoal("train-vae", "--env", env, "--dataset", str(dataset), "--out", str(vae), *settings, log=log)


def run_job(env: str, spec: str, seed: int, budgets: list[int], root: Path, results: Path, settings: list[str]):
    label, method, extra = variant(spec)
    run = root / env / label / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    log = run / "campaign.log"
    inputs = [] if method == "td3" or extra else ["--vae", str(results / env / "vae.pt"),
                                                 "--dataset", str(results / env / "vae_dataset.h5")]
    for budget in budgets:
        out = run / f"eval_{budget}.csv"
        if out.is_file():
            continue
        visgoal("train", "--env", env, "--method", method, "--seed", str(seed), "--out", str(run), *inputs,
                *extra, *settings, "--set", f"train.total_steps={budget}", log=log)
        visgoal("evaluate", "--env", env, "--method", method, "--runs", str(run.parent), "--seeds", str(seed),
                "--out", str(out), *settings, log=log)
    print(f"done: {env}/{label} seed {seed}", flush=True)


def table(envs, specs, seeds, budgets, root: Path) -> str:
    from visgoal.envs import load_spec

    lines = ["| env | method | env steps | seeds | success | final distance | wall-clock per run |",
             "|---|---|---:|---:|---|---|---|"]
    for env in envs:
        unit = load_spec(env).distance_unit
        for spec in specs:
            label = variant(spec)[0]
            for budget in budgets:
                success, distance, minutes = [], [], []
                for seed in seeds:
                    run = root / env / label / f"seed{seed}"
                    if not (run / f"eval_{budget}.csv").is_file():
                        continue
                    summary = json.loads((run / f"eval_{budget}.json").read_text())
                    success.append(summary["success_rate"])
                    distance.append(summary["final_distance"])
                    with open(run / "curve.csv") as f:
                        rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= budget]
                    minutes.append(float(rows[-1]["wall_clock_s"]) / 60)
                if not success:
                    continue
                lines.append(f"| {env} | {label} | {budget} | {len(success)} | "
                             f"{np.mean(success):.2f} ± {np.std(success):.2f} ({', '.join(f'{s:.2f}' for s in success)}) | "
                             f"{np.mean(distance):.3f} ± {np.std(distance):.3f} {unit} | "
                             f"{np.mean(minutes):.0f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", required=True)
    parser.add_argument("--methods", nargs="+", required=True, help="td3, tdm, rig, crl, or crl:pixels")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", type=int, default=[25000, 50000], help="env steps, ascending")
    parser.add_argument("--root", type=Path, required=True, help="where the runs go")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where each env's vae.pt is")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one per core)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--table-only", action="store_true", help="print the table of what exists")
    args = parser.parse_args()
    settings = [item for value in args.set for item in ("--set", value)]
    budgets = sorted(args.budgets)
    if not args.table_only:
        args.root.mkdir(parents=True, exist_ok=True)
        for env in args.envs:
            if any(variant(s)[1] != "td3" and not variant(s)[2] for s in args.methods):
                prepare_vae(env, args.results, settings, args.root / f"{env}-vae.log")
        jobs = [(env, spec, seed) for seed in args.seeds for env in args.envs for spec in args.methods]
        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(run_job, *job, budgets, args.root, args.results, settings) for job in jobs]:
                future.result()
    print(table(args.envs, args.methods, args.seeds, budgets, args.root))


if __name__ == "__main__":
    main()
