"""The results layout, in one place: every stage, rule and report finds its files here.

Each profile has its own tree, so that running one never overwrites another's results:
`results/` for the default profile (the files dvc.yaml and the README name), and
`results/<profile>/` for the others (`results/smoke/`, `results/paper/`). Below, `results/`
is a profile's root (`root(profile)`):

    results/<env>/demos.h5, demos.png                            demos (an env's teacher, or a policy)
    results/<env>/vae_dataset.h5, dataset_samples.png           dataset
    results/<env>/vae.pt, vae_metrics.json, vae_history.csv,     train-vae
                  vae_recon.png
    results/<env>/<method>/seed<k>/                              train (policy.pt, curve.csv, ...)
    results/<env>/<method>_eval.{csv,json,png}                   evaluate (and teacher_eval.*: the teacher's)
    results/report/                                              report
    results/logs/..., results/benchmarks/...                     the workflow's logs and timings

Every function takes strings too, so that the workflow can build its patterns from them:
`run_dir("{env}", "{method}", "{seed}")` is Snakemake's `results/{env}/{method}/seed{seed}`.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")


def root(profile: str) -> Path:
    """A profile's results tree: `results/` for the default profile, `results/<profile>/` otherwise."""
    return RESULTS if profile == "default" else RESULTS / profile


def env_dir(env: str, root: str | Path = RESULTS) -> Path:
    return Path(root) / env


def demos(env: str, root: str | Path = RESULTS) -> Path:
    """The demonstrations (visgoal.data.demos has the layout)."""
    return env_dir(env, root) / "demos.h5"


def demos_picture(env: str, root: str | Path = RESULTS) -> Path:
    return env_dir(env, root) / "demos.png"


def dataset(env: str, root: str | Path = RESULTS) -> Path:
    return env_dir(env, root) / "vae_dataset.h5"


def dataset_samples(env: str, root: str | Path = RESULTS) -> Path:
    return env_dir(env, root) / "dataset_samples.png"


def vae(env: str, root: str | Path = RESULTS) -> Path:
    return env_dir(env, root) / "vae.pt"


def vae_metrics(env: str, root: str | Path = RESULTS) -> Path:
    return env_dir(env, root) / "vae_metrics.json"


def vae_history(env: str, root: str | Path = RESULTS) -> Path:
    """The VAE's losses per epoch (a DVC plot); vae_metrics.json keeps the kept epoch's scores."""
    return env_dir(env, root) / "vae_history.csv"


def vae_recon(env: str, root: str | Path = RESULTS) -> Path:
    return env_dir(env, root) / "vae_recon.png"


def runs(env: str, method: str, root: str | Path = RESULTS) -> Path:
    """The folder of a method's seed<k>/ runs (what `evaluate --runs` reads)."""
    return env_dir(env, root) / method


def seed_dir(runs_dir: str | Path, seed: int | str) -> Path:
    """One seed's run in a folder of runs."""
    return Path(runs_dir) / f"seed{seed}"


def run_dir(env: str, method: str, seed: int | str, root: str | Path = RESULTS) -> Path:
    return seed_dir(runs(env, method, root), seed)


# What a training run writes into its folder (the rest of it is checkpoint.pt, its resume state).
POLICY, CURVE, RUN_VAE, CHECKPOINT = "policy.pt", "curve.csv", "vae.pt", "checkpoint.pt"


TEACHER = "teacher"  # `evaluate --method teacher`: an env's scripted teacher (visgoal.teachers), no runs
GCBC = "gcbc"  # behaviour cloning from a teacher's demonstrations alone: a method of the envs with a teacher only


def evaluation(env: str, method: str, ext: str = "csv", root: str | Path = RESULTS) -> Path:
    """`<method>_eval.csv` (one row per seed and episode), `.json` (the summary) or `.png` (the picture)."""
    return env_dir(env, root) / f"{method}_eval.{ext}"


def report_dir(root: str | Path = RESULTS) -> Path:
    return Path(root) / "report"


REPORT_FILES = ("curves.png", "final.png", "vae_recon.png", "frames.png", "summary.csv", "summary.md")


def log_file(stage: str, root: str | Path = RESULTS) -> Path:
    """A workflow job's log: `logs/<stage>.log`, stage e.g. `{env}/{method}/train_seed{seed}`."""
    return Path(root) / "logs" / f"{stage}.log"


def available_envs(root: str | Path | None = None) -> list[str]:
    """The environments a project defines: its `envs/<name>.yaml` files, by name (no MuJoCo needed)."""
    from visgoal.config import project_root

    return sorted(p.stem for p in (Path(root or project_root()) / "envs").glob("*.yaml"))


def benchmark_file(stage: str, root: str | Path = RESULTS) -> Path:
    """A workflow job's timings (Snakemake's `benchmark:`)."""
    return Path(root) / "benchmarks" / f"{stage}.tsv"
