"""`python -m visgoal <sub-command>`: one command per pipeline stage.

Every sub-command takes --profile, --set section.key=value and --out, and logs
the fully resolved parameters it runs with. Errors in the user's input end the
command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from visgoal.config import PROFILE_ENV_VAR, PROFILES, ConfigError, Params, load_params

log = logging.getLogger("visgoal")


def _common(parser: argparse.ArgumentParser, out_help: str) -> None:
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help=f"scale profile (default: ${PROFILE_ENV_VAR}, then params.yaml's 'profile')")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one parameter of params.yaml; repeatable")
    parser.add_argument("--params", type=Path, default=None, help="params file (default: ./params.yaml)")
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _resolve(args: argparse.Namespace) -> Params:
    params = load_params(args.params, args.profile, args.overrides)
    log.info("resolved parameters (profile %s): %s", params.profile, json.dumps(params.as_dict(), sort_keys=True))
    return params


# --- dataset ----------------------------------------------------------------------------
def cmd_dataset(args: argparse.Namespace) -> int:
    from visgoal.data import write_dataset
    from visgoal.envs import make_env
    from visgoal.figures import image_grid, save_png

    params = _resolve(args)
    out = args.out or Path("results") / args.env / "vae_dataset.h5"
    cfg = params["dataset"]
    start = time.perf_counter()
    with make_env(args.env, image_size=params["render"]["image_size"]) as env:
        write_dataset(env, out, frames=cfg["frames"], seed=cfg["seed"], chunk_frames=cfg["chunk_frames"],
                      compression_level=cfg["compression_level"],
                      attrs={"profile": params.profile, "dataset": cfg, "render": params["render"]},
                      progress=not args.quiet)
    seconds = time.perf_counter() - start
    log.info("%d frames in %.1f s: %.1f frames/s", cfg["frames"], seconds, cfg["frames"] / seconds)
    samples = out.with_name("dataset_samples.png")
    save_png(_sample_grid(out), samples, scale=2)
    log.info("wrote %s and %s", out, samples)
    return 0


def _sample_grid(path: Path, columns: int = 8):
    """Observations above goal images, like Figure 3 of the image-based TDM report."""
    import numpy as np

    from visgoal.data import ImageDataset
    from visgoal.figures import image_grid

    data = ImageDataset(path)
    is_goal = data.read("is_goal", slice(None))
    picks = {flag: np.flatnonzero(is_goal == flag) for flag in (False, True)}
    rows = []
    for flag in (False, True):
        index = picks[flag][np.linspace(0, len(picks[flag]) - 1, min(columns, len(picks[flag]))).astype(int)]
        rows.append(list(data.images(np.unique(index))))
    data.close()
    return image_grid(rows)


# --- bench-render -----------------------------------------------------------------------
def cmd_bench_render(args: argparse.Namespace) -> int:
    from visgoal.bench import bench_render
    from visgoal.envs import available_envs

    params = _resolve(args)
    envs = args.envs or available_envs()
    bench_render(envs, frames=args.frames or params["bench_render"]["frames"],
                 image_size=params["render"]["image_size"], out=args.out)
    return 0


# --- stages implemented in their own modules ------------------------------------------------
def cmd_train_vae(args: argparse.Namespace) -> int:
    from visgoal.vae.train import train_vae

    params = _resolve(args)
    dataset = args.dataset or Path("results") / args.env / "vae_dataset.h5"
    train_vae(args.env, dataset, args.out or Path("results") / args.env / "vae.pt", params, progress=not args.quiet)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from visgoal.agents.workspace import train

    params = _resolve(args)
    out = args.out or Path("results") / args.env / args.method / f"seed{args.seed}"
    train(args.env, args.method, args.seed, out, params, vae=args.vae, dataset=args.dataset, progress=not args.quiet)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from visgoal.evaluation import evaluate

    params = _resolve(args)
    out = args.out or Path("results") / args.env / f"{args.method}_eval.csv"
    evaluate(args.env, args.method, out, params, seeds=args.seeds, eval_seed=args.eval_seed,
             runs=args.runs, vae=args.vae, progress=not args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from visgoal.report import report

    params = _resolve(args)
    report(args.results, args.out or args.results / "report", params)
    return 0


# --- the parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visgoal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="<sub-command>")

    p = sub.add_parser("dataset", help="collect a VAE image dataset (HDF5): half goal images, half observations")
    p.add_argument("--env", required=True, help="environment name (a file envs/<name>.yaml)")
    _common(p, "output HDF5 file (default: results/<env>/vae_dataset.h5)")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("train-vae", help="train the beta-VAE (Lightning) on a dataset; write vae.pt")
    p.add_argument("--env", required=True, help="environment name")
    p.add_argument("--dataset", type=Path, default=None, help="HDF5 dataset (default: results/<env>/vae_dataset.h5)")
    _common(p, "output checkpoint (default: results/<env>/vae.pt)")
    p.set_defaults(func=cmd_train_vae)

    p = sub.add_parser("train", help="train one agent (td3, tdm or rig) for one seed")
    p.add_argument("--env", required=True, help="environment name")
    p.add_argument("--method", required=True, choices=("td3", "tdm", "rig"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae", type=Path, default=None, help="VAE checkpoint for image agents (default: results/<env>/vae.pt)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="VAE dataset for online fine-tuning (default: results/<env>/vae_dataset.h5)")
    _common(p, "output directory (default: results/<env>/<method>/seed<k>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate every seed of a method on the fixed episode set")
    p.add_argument("--env", required=True, help="environment name")
    p.add_argument("--method", required=True, choices=("td3", "tdm", "rig"))
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: params 'seeds')")
    p.add_argument("--eval-seed", type=int, default=None, help="seed of the fixed (initial state, goal) set")
    p.add_argument("--runs", type=Path, default=None, help="directory of seed<k>/ runs (default: results/<env>/<method>)")
    p.add_argument("--vae", type=Path, default=None,
                   help="VAE checkpoint for image agents (default: each run's own seed<k>/vae.pt)")
    _common(p, "output CSV (default: results/<env>/<method>_eval.csv)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="tables and plots over every environment and method")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory")
    _common(p, "output directory (default: results/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench-render", help="frames per second: gymnasium's renderer vs ours, in one run")
    p.add_argument("--envs", nargs="+", default=None, help="environments (default: all in envs/)")
    p.add_argument("--frames", type=int, default=None, help="frames per renderer (default: params bench_render.frames)")
    _common(p, "also write the table as CSV here")
    p.set_defaults(func=cmd_bench_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s visgoal %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(os.environ.get("VISGOAL_LOG", "INFO"))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        if os.environ.get("VISGOAL_DEBUG"):
            raise
        print(f"visgoal {args.command}: error: {err}", file=sys.stderr)
        return 2
