"""Does a change of the code keep every method's behaviour? Trains each case at the smoke profile
with the code of a git ref (`--before`, a temporary worktree) and with this tree, and prints the
pairs of hashes of the policy's weights and of curve.csv without its wall-clock column.

    python benchmarks/same_behaviour.py --before retired-options-2026-12 --work /tmp/same

The cases: td3, rig, tdm and crl at their defaults, then with each retained non-default option
one at a time, on point_maze and on inverted_pendulum (whose fall is an absorbing end). Both
trees read the same smoke dataset and VAE (made once by the `--before` tree). A case's `--before`
hashes are kept under `--work`, so a second run trains only this tree. Exit status 1 if any pair
differs. What policy.pt stores beside the weights (its meta) is left out: it may change where an
option was retired.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES: list[tuple[str, str, tuple[str, ...]]] = [
    *[("point_maze", "td3", s) for s in ((), ("td3.exploration=ou",), ("td3.actor_average=0.01",),
                                         ("td3.max_grad_norm=1.0",), ("td3.normalize_inputs=false",))],
    *[("point_maze", "rig", s) for s in ((), ("image_agents.exploration_goals=env",),
                                         ("image_agents.latent_frames=1",), ("image_agents.finetune.every=0",))],
    *[("point_maze", "tdm", s) for s in ((), ("tdm.distance=norm",), ("tdm.action_selection=argmax",),
                                         ("tdm.eval_tau=2",))],
    *[("point_maze", "crl", s) for s in ((), ("crl.loss=infonce",), ("crl.representation=pixels",),
                                         ("crl.representation=state",), ("crl.policy=gaussian",),
                                         ("crl.actor_random_goals=false",), ("crl.exploration_goals=prior",),
                                         ("crl.actor_average=0.0",))],
    *[("inverted_pendulum", m, ()) for m in ("td3", "rig", "tdm", "crl")],
    ("inverted_pendulum", "crl", ("crl.loss=infonce",)),
    ("inverted_pendulum", "crl", ("crl.representation=pixels",)),
]


def run(tree: Path, mlflow: Path, *args: str) -> None:
    env = {**os.environ, "VISGOAL_ROOT": str(tree), "PYTHONPATH": str(tree / "src"), "MUJOCO_GL": "egl",
           "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow}"}
    done = subprocess.run([sys.executable, "-m", "visgoal", *args, "--profile", "smoke", "--quiet"], cwd=tree,
                          env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"visgoal {' '.join(args)} failed in {tree}:\n{done.stderr[-2000:]}")


def hashes(run_dir: Path) -> tuple[str, str]:
    """(policy weights, curve.csv without wall_clock_s): sha256, 12 hex digits each."""
    import torch

    saved = torch.load(run_dir / "policy.pt", map_location="cpu", weights_only=True)
    weights = hashlib.sha256()
    for part in ("weights", "encoder", "critic"):
        for name, tensor in sorted((saved.get(part) or {}).items()):
            weights.update(f"{part}.{name}".encode())
            weights.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    rows = list(csv.DictReader(io.StringIO((run_dir / "curve.csv").read_text())))
    curve = json.dumps([{k: v for k, v in row.items() if k != "wall_clock_s"} for row in rows])
    return weights.hexdigest()[:12], hashlib.sha256(curve.encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="retired-options-2026-12", help="git ref of the code to compare with")
    parser.add_argument("--work", type=Path, required=True, help="a folder for the worktree, runs and cache")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", f"{args.before}^{{commit}}"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    before = work / f"tree-{commit[:10]}"
    if not before.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(before), commit], cwd=ROOT, check=True,
                       capture_output=True)
    cache_file = work / f"before-{commit[:10]}.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    for env in sorted({case[0] for case in CASES}):  # one smoke dataset and VAE per env, for both trees
        inputs = work / "inputs" / env
        if not (inputs / "vae.pt").is_file():
            run(before, work / "mlflow.db", "dataset", "--env", env, "--out", str(inputs / "vae_dataset.h5"))
            run(before, work / "mlflow.db", "train-vae", "--env", env, "--dataset", str(inputs / "vae_dataset.h5"),
                "--out", str(inputs / "vae.pt"))
    results: dict[str, dict[str, tuple[str, str]]] = {"before": {}, "now": {}}
    for label, tree in (("before", before), ("now", ROOT)):  # every case of the ref first: they are kept
        for env, method, sets in CASES:
            name = " ".join((env, method, *sets))
            if label == "before" and name in cache:
                results[label][name] = tuple(cache[name])
                continue
            inputs = work / "inputs" / env
            out = work / label / name.replace(" ", "_").replace("=", "-")
            shutil.rmtree(out, ignore_errors=True)  # a finished run's checkpoint would be resumed, not retrained
            run(tree, work / "mlflow.db", "train", "--env", env, "--method", method, "--seed", "0",
                "--vae", str(inputs / "vae.pt"), "--dataset", str(inputs / "vae_dataset.h5"), "--out", str(out),
                *[f"--set={s}" for s in sets])
            results[label][name] = hashes(out)
            if label == "before":
                cache[name] = results[label][name]
                cache_file.write_text(json.dumps(cache, indent=1))
    differ = 0
    print(f"| case | policy {args.before} | policy now | curve {args.before} | curve now | same |")
    print("|---|---|---|---|---|---|")
    for env, method, sets in CASES:
        name = " ".join((env, method, *sets))
        old, new = results["before"][name], results["now"][name]
        differ += old != new
        print(f"| {name} | {old[0]} | {new[0]} | {old[1]} | {new[1]} | {'yes' if old == new else '**no**'} |")
    print(f"{len(CASES) - differ} of {len(CASES)} cases the same")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
