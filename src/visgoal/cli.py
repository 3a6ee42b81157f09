"""`python -m visgoal <sub-command>`: one command per pipeline stage.

Every sub-command takes --profile, --set section.key=value and --out, and logs
the fully resolved parameters it runs with. Errors in the user's input end the
command with one line on stderr and exit status 2. The heavy modules (torch, mujoco) are
imported by the sub-command that runs, so that `visgoal --help` and `--version` answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from visgoal import paths
from visgoal.config import PROFILE_ENV_VAR, PROFILES, ConfigError, Params, load_params
from visgoal.processes import sigterm_unwinds

log = logging.getLogger("visgoal")


def _common(parser: argparse.ArgumentParser, out_help: str) -> None:
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help=f"scale profile (default: ${PROFILE_ENV_VAR}, then params.yaml's 'profile'); its results "
                             "tree is results/ (default profile) or results/<profile>/, the 'results/' below")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one parameter of params.yaml; repeatable")
    parser.add_argument("--params", type=Path, default=None, help="params file (default: ./params.yaml)")
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


class _Methods:
    """The agents' names (visgoal.agents.AGENTS), and `extra` ones, read when argparse checks a --method
    or prints a sub-command's help, not before: the agents import torch, which `visgoal --help` need
    not wait for."""

    def __init__(self, *extra: str):
        self.extra = extra

    def __iter__(self):
        from visgoal.agents import AGENTS

        return iter([*AGENTS, *self.extra])

    def __contains__(self, method) -> bool:
        return method in list(self)


class _Version(argparse.Action):
    """--version: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"{parser.prog} {version('visgoal')}")
        except PackageNotFoundError:
            parser.error("visgoal is not installed, so it has no version; install it with `pip install -e .`")
        parser.exit()


def _env(parser: argparse.ArgumentParser) -> None:
    envs = paths.available_envs()
    parser.add_argument("--env", required=True,
                        help=f"environment: {', '.join(envs) or 'none found'} (the files envs/<name>.yaml)")


def _method(parser: argparse.ArgumentParser, what: str, *extra: str) -> None:
    parser.add_argument("--method", required=True, choices=_Methods(*extra), metavar="METHOD",
                        help=f"the agent {what}: %(choices)s")


def _at_least(minimum: int):
    """An argparse type: an integer >= `minimum`, refused otherwise in one line that names the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"got {text!r}; give an integer >= {minimum}")
        return value

    return parse


def _resolve(args: argparse.Namespace) -> Params:
    """The parameters a command runs with: a stage of one environment (`--env`) with its own tuning."""
    params = load_params(args.params, args.profile, args.overrides, env=getattr(args, "env", None))
    if sys.stderr.isatty():  # a person watching: the blob would bury the progress (MLflow has every value)
        log.info("profile %s%s", params.profile, "".join(f", --set {o}" for o in args.overrides))
    else:  # a log file: the full record, once, at its top
        log.info("resolved parameters (profile %s): %s", params.profile, json.dumps(params.as_dict(), sort_keys=True))
    return params


# --- the stages (visgoal.stages) -----------------------------------------------------------
def cmd_demos(args: argparse.Namespace) -> int:
    from visgoal.stages import demos

    params = _resolve(args)
    demos(args.env, args.out or paths.demos(args.env, paths.root(params.profile)), params, policy=args.policy,
          progress=not args.quiet)
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from visgoal.stages import dataset

    params = _resolve(args)
    root = paths.root(params.profile)
    dataset(args.env, args.out or paths.dataset(args.env, root), params,
            demos_path=args.demos or paths.demos(args.env, root), progress=not args.quiet)
    return 0


def cmd_train_vae(args: argparse.Namespace) -> int:
    from visgoal.stages import train_vae

    params = _resolve(args)
    root = paths.root(params.profile)
    train_vae(args.env, args.dataset or paths.dataset(args.env, root), args.out or paths.vae(args.env, root), params,
              progress=not args.quiet)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from visgoal.stages import train

    params = _resolve(args)
    out = args.out or paths.run_dir(args.env, args.method, args.seed, paths.root(params.profile))
    train(args.env, args.method, args.seed, out, params,
          vae=args.vae, dataset_path=args.dataset, progress=not args.quiet, demos=args.demos)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from visgoal.stages import evaluate

    params = _resolve(args)
    out = args.out or paths.evaluation(args.env, args.method, root=paths.root(params.profile))
    evaluate(args.env, args.method, out, params, seeds=args.seeds,
             eval_seed=args.eval_seed, runs=args.runs, vae=args.vae, progress=not args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from visgoal.stages import report

    params = _resolve(args)
    results = args.results or paths.root(params.profile)
    report(results, args.out or paths.report_dir(results), params)
    return 0


# --- benchmarks ---------------------------------------------------------------------------
def cmd_bench_render(args: argparse.Namespace) -> int:
    from visgoal.bench import bench_render
    from visgoal.envs import available_envs

    params = _resolve(args)
    envs = args.envs or available_envs()
    bench_render(envs, frames=args.frames or params["bench_render"]["frames"],
                 image_size=params["render"]["image_size"], out=args.out)
    return 0


def cmd_dvc_yaml(args: argparse.Namespace) -> int:
    from visgoal.config import project_root
    from visgoal.dvcfile import generate

    params_file = args.params or project_root() / "params.yaml"
    _resolve(args)  # a malformed params.yaml fails here, in one line
    text = generate(params_file)
    if args.out is None:
        sys.stdout.write(text)
    else:
        from visgoal.files import atomic_output

        with atomic_output(args.out) as tmp:
            tmp.write_text(text)
        log.info("wrote %s", args.out)
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Every parameter a stage of `--env` (and `--method`) runs with, and where each value came from."""
    from visgoal.config import parameter_sources

    params, sources = parameter_sources(args.params, args.profile, args.overrides, env=args.env)
    sections = None
    if args.method:  # what its training stage reads (its Snakemake rule's settings, its dvc.yaml stage's params)
        from visgoal.stages import train_sections

        sections = set(train_sections(args.method, params))
    rows = [(key, json.dumps(value), sources[key]) for key, value in params.flat().items()
            if sections is None or key.split(".")[0] in sections]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    print(f"# profile {params.profile}, env {args.env or '(none: no environment tuning)'}"
          f"{f', method {args.method}' if args.method else ''}")
    for key, value, source in rows:
        print(f"{key:<{width[0]}}  {value:<{width[1]}}  {source}")
    return 0


def cmd_exp_show(args: argparse.Namespace) -> int:
    """`dvc exp show` in a few columns (dvcfile.exp_table)."""
    from dvc.exceptions import DvcException

    from visgoal.dvcfile import show_experiments

    try:
        show_experiments(markdown=args.md, num=args.num, all_commits=args.all_commits)
    except DvcException as err:  # not in a DVC repository, a revision Git does not know: one line
        raise RuntimeError(f"dvc: {err}") from err
    return 0


def cmd_metrics_show(args: argparse.Namespace) -> int:
    """`dvc metrics show` of the files that exist, a table per kind (dvcfile.metrics_tables)."""
    from dvc.exceptions import DvcException

    from visgoal.dvcfile import show_metrics

    try:
        show_metrics(markdown=args.md)
    except DvcException as err:
        raise RuntimeError(f"dvc: {err}") from err
    return 0


# --- the parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visgoal", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version, help="print the version of visgoal and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<sub-command>")

    p = sub.add_parser("demos", help="record demonstrations (HDF5): the env's scripted teacher, or a trained policy")
    _env(p)
    p.add_argument("--policy", type=Path, default=None,
                   help="a run's policy.pt to record instead of the teacher (an env without a teacher needs one)")
    _common(p, "output HDF5 file (default: results/<env>/demos.h5; demos.png beside it)")
    p.set_defaults(func=cmd_demos)

    p = sub.add_parser("dataset", help="collect a VAE image dataset (HDF5): half goal images, half observations")
    _env(p)
    p.add_argument("--demos", type=Path, default=None,
                   help="demonstrations whose pictures make dataset.demo_share of the frames, where it is above 0 "
                        "(default: results/<env>/demos.h5)")
    _common(p, "output HDF5 file (default: results/<env>/vae_dataset.h5)")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("train-vae", help="train the beta-VAE (Lightning) on a dataset; write vae.pt")
    _env(p)
    p.add_argument("--dataset", type=Path, default=None, help="HDF5 dataset (default: results/<env>/vae_dataset.h5)")
    _common(p, "output checkpoint (default: results/<env>/vae.pt)")
    p.set_defaults(func=cmd_train_vae)

    p = sub.add_parser("train", help="train one agent (a --method) for one seed")
    _env(p)
    _method(p, "to train")
    p.add_argument("--seed", type=_at_least(0), default=0,
                   help="seed of the run: its network weights, exploration and episodes, and its folder "
                        "seed<k>/ (default: 0)")
    p.add_argument("--vae", type=Path, default=None, help="VAE checkpoint for image agents (default: results/<env>/vae.pt)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="VAE dataset for online fine-tuning (default: results/<env>/vae_dataset.h5)")
    p.add_argument("--demos", type=Path, default=None,
                   help="demonstrations, for gcbc and where demo_learning.enabled (default: results/<env>/demos.h5)")
    _common(p, "output directory (default: results/<env>/<method>/seed<k>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate every seed of a method on the fixed episode set")
    _env(p)
    _method(p, "to evaluate (teacher: the env's scripted teacher, which needs no training)", "teacher")
    p.add_argument("--seeds", type=_at_least(0), nargs="+", default=None, help="seeds (default: params 'seeds')")
    p.add_argument("--eval-seed", type=_at_least(0), default=None, help="seed of the fixed (initial state, goal) set")
    p.add_argument("--runs", type=Path, default=None, help="directory of seed<k>/ runs (default: results/<env>/<method>)")
    p.add_argument("--vae", type=Path, default=None,
                   help="VAE checkpoint for image agents (default: each run's own seed<k>/vae.pt)")
    _common(p, "output CSV (default: results/<env>/<method>_eval.csv)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="tables and plots over every environment and method")
    p.add_argument("--results", type=Path, default=None,
                   help="results directory (default: the profile's: results/, or results/<profile>/)")
    _common(p, "output directory (default: <results>/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench-render", help="frames per second: gymnasium's renderer vs ours, in one run")
    p.add_argument("--envs", nargs="+", default=None, help="environments (default: all in envs/)")
    p.add_argument("--frames", type=_at_least(1), default=None, help="frames per renderer (default: params bench_render.frames)")
    _common(p, "also write the table as CSV here")
    p.set_defaults(func=cmd_bench_render)
    p = sub.add_parser("params", help="print the parameters a stage runs with, and where each came from")
    p.add_argument("--env", default=None, help=f"environment: {', '.join(paths.available_envs())} (its tuning, envs/<env>.yaml)")
    p.add_argument("--method", default=None, choices=_Methods(), metavar="METHOD",
                   help="only the sections its training reads: %(choices)s")
    _common(p, "(unused)")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("dvc-yaml", help="generate dvc.yaml (the DAG of the Snakefile) from params.yaml")
    _common(p, "write it here (default: stdout), e.g. dvc.yaml")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("exp-show", help="`dvc exp show` at a terminal's width: per experiment the parameters "
                                        "that differ, per evaluation its env, method, success_rate and "
                                        "final_distance")
    p.add_argument("-n", "--num", type=int, default=1,
                   help="experiments of the last NUM commits, as `dvc exp show -n` (negative: all; default: 1)")
    p.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit")
    p.add_argument("--md", action="store_true", help="a Markdown table")
    p.set_defaults(func=cmd_exp_show)

    p = sub.add_parser("metrics-show", help="`dvc metrics show` of the metrics files that exist: a table per "
                                            "kind (the VAEs, the evaluations), mean ± std over seeds in one column")
    p.add_argument("--md", action="store_true", help="Markdown tables")
    p.set_defaults(func=cmd_metrics_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s visgoal %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(os.environ.get("VISGOAL_LOG", "INFO"))
    args = build_parser().parse_args(argv)
    try:
        with sigterm_unwinds():
            return args.func(args)
    except (ConfigError, ValueError, RuntimeError, OSError) as err:
        if os.environ.get("VISGOAL_DEBUG"):
            raise
        print(f"visgoal {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    finally:
        log.removeHandler(handler)  # called again in one process (tests, scripts): no doubled lines, no stale stream


def _one_line(err: Exception) -> str:
    """Our errors say what to do; an operating system's error names its file and the reason."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__
