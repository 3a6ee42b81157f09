"""The pipeline's stages, one function each: what `python -m visgoal <stage>` runs.

    dataset     envs/<env>.yaml                      -> vae_dataset.h5, dataset_samples.png
    train_vae   vae_dataset.h5                       -> vae.pt, vae_metrics.json, vae_history.csv, vae_recon.png
    train       (image agents: vae.pt, its dataset)  -> <method>/seed<k>/{policy.pt, curve.csv[, vae.pt]}
    evaluate    every seed's policy.pt               -> <method>_eval.{csv,json,png}
    report      every evaluation and curve           -> report/
Each reads only its inputs and writes only its outputs, atomically; the file names are
visgoal.paths'. The work itself lives below: data/, vae/, agents/, evaluation.py, report.py.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import time
from functools import partial
from pathlib import Path

import numpy as np

from visgoal import paths
from visgoal.config import Params
from visgoal.device import prepare, use_device
from visgoal.files import atomic_output, check_writable

log = logging.getLogger("visgoal")


# --- dataset ------------------------------------------------------------------------------
def dataset(env: str, out: Path, params: Params, progress: bool = True) -> Path:
    """Collect the VAE's image dataset (half goal images, half observations) and its sample picture."""
    from visgoal.data import write_dataset
    from visgoal.figures import save_labelled_grid

    cfg = params["dataset"]
    check_writable(out)
    # torch does not run here, but MuJoCo's EGL renderer follows the job's GPU: the VAE learns from
    # pictures of the renderer the agents will see through
    log_renderer(use_device(params)["device"])
    start = time.perf_counter()
    write_dataset(env, out, frames=cfg["frames"], seed=cfg["seed"], image_size=params["render"]["image_size"],
                  chunk_frames=cfg["chunk_frames"], compression_level=cfg["compression_level"],
                  attrs={"profile": params.profile, "dataset": cfg, "render": params["render"]},
                  progress=progress, processes=params["speed"]["processes"])
    seconds = time.perf_counter() - start
    log.info("%d frames in %.1f s: %.1f frames/s", cfg["frames"], seconds, cfg["frames"] / seconds)
    samples = Path(out).with_name(paths.dataset_samples(env).name)
    save_labelled_grid(sample_rows(out), samples, f"{env}: VAE dataset of {cfg['frames']} frames, evenly spaced "
                       f"samples", ["observations\n(random actions)", "goal images"])
    log.info("wrote %s and %s", out, samples)
    return Path(out)


def log_renderer(device: str) -> None:
    """Log the OpenGL renderer of this stage's pictures, once per run (its worker processes make their
    contexts as this one does: the same MUJOCO_GL and EGL device)."""
    from visgoal.envs.render import gl_context
    from visgoal.gl import log_renderer as log_gl

    gl_context()
    log_gl(device)


def sample_rows(path: Path, columns: int = 8) -> list[list[np.ndarray]]:
    """Observations above goal images, like Figure 3 of the image-based TDM report."""
    from visgoal.data import ImageDataset

    data = ImageDataset(path)
    is_goal = data.read("is_goal", slice(None))
    picks = {flag: np.flatnonzero(is_goal == flag) for flag in (False, True)}
    rows = []
    for flag in (False, True):
        index = picks[flag][np.linspace(0, len(picks[flag]) - 1, min(columns, len(picks[flag]))).astype(int)]
        rows.append(list(data.images(np.unique(index))))
    data.close()
    return rows


# --- train-vae and train ------------------------------------------------------------------
def train_vae(env: str, dataset_path: Path, out: Path, params: Params, progress: bool = True) -> dict:
    from visgoal.vae.train import train_vae as fit

    check_writable(out)
    return fit(env, dataset_path, out, use_device(params), progress=progress)


def train(env: str, method: str, seed: int, out: Path, params: Params, vae: Path | None = None,
          dataset_path: Path | None = None, progress: bool = True) -> Path:
    from visgoal.agents.workspace import train as run

    check_writable(Path(out) / paths.POLICY)
    return run(env, method, seed, out, use_device(params), vae=vae, dataset=dataset_path, progress=progress)


# --- evaluate -----------------------------------------------------------------------------
TEACHER = "teacher"  # `evaluate --method teacher`: the env's scripted teacher (visgoal.teachers), no training


def evaluate(env: str, method: str, out_csv: Path, params: Params, seeds=None, eval_seed: int | None = None,
             runs: Path | None = None, vae: Path | None = None, progress: bool = True) -> Path:
    """Every seed's policy on the protocol's fixed episodes: `<method>_eval.csv` (a row per seed and
    episode), `.json` (the summary over seeds) and `.png` (first frame, final frame, goal image).
    Each seed's episodes run in groups of `evaluate.batch`, stepped together (`run_episodes`), and
    `speed.processes` processes share the groups; each group is the same whoever runs it."""
    from tqdm import tqdm

    from visgoal.agents import load_policy
    from visgoal.envs import load_spec
    from visgoal.evaluation import COLUMNS, summary, write_summary
    from visgoal.figures import save_labelled_grid
    from visgoal.processes import deal, share_out

    check_writable(out_csv)
    params = use_device(params)
    cfg, device = params["evaluate"], params["device"]  # where the policies act
    eval_seed = cfg["eval_seed"] if eval_seed is None else eval_seed
    out_csv = Path(out_csv)
    if method == TEACHER:  # scripted, no training: one deterministic set of episodes, seed 0
        if runs or vae or (seeds and list(seeds) != [0]):
            raise ValueError("the teacher is scripted: it reads no runs and no VAE and has one seed; "
                             "drop --runs, --vae and --seeds")
        seeds, metas = [0], {0: {"view": {"kind": TEACHER}}}
    else:
        seeds = list(seeds or params["seeds"])
        runs = Path(runs) if runs else paths.runs(env, method, paths.root(params.profile))
        metas = {seed: load_policy(paths.seed_dir(runs, seed), vae)[2] for seed in seeds}  # a bad run fails here

    episodes = [(seed, i) for seed in seeds for i in range(cfg["episodes"])]
    pictured = frozenset((seeds[0], i) for i in range(min(cfg["picture_episodes"], cfg["episodes"])))
    if pictured or any(meta["view"]["kind"] != "state" for meta in metas.values()):  # it renders
        log_renderer(device)
    protocol = partial(protocol_episodes, env, params["render"]["image_size"], runs, vae, eval_seed, pictured,
                       device=device, teacher=method == TEACHER)
    groups = [[(seed, i) for i in range(start, min(start + cfg["batch"], cfg["episodes"]))]
              for seed in seeds for start in range(0, cfg["episodes"], cfg["batch"])]
    results = {}
    with tqdm(total=len(episodes), desc=f"evaluate {env}/{method}", disable=not progress) as bar:
        def keep(item):
            results.update(item)
            bar.update(len(item))
        share_out(protocol, deal(groups, params["speed"]["processes"]), keep)

    unit = load_spec(env).distance_unit
    rows, pictures, captions = [], [], []
    for seed, i in episodes:
        result = dict(results[seed, i])
        if (seed, i) in pictured:
            pictures.append(result.pop("frames"))
            captions.append(f"episode {i}\n{'success' if result['success'] else 'failure'}, "
                            f"{result['final_distance']:.3f} {unit}")
        rows.append({"env": env, "method": method, "seed": seed, "episode": i, **result})

    with atomic_output(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    per_seed = {seed: summary([r for r in rows if r["seed"] == seed]) for seed in seeds}
    write_summary(out_csv.with_suffix(".json"), per_seed)
    picture = None
    if pictures:
        picture = save_labelled_grid(
            pictures, out_csv.with_suffix(".png"), f"{env} / {method}, seed {seeds[0]}: evaluation episodes "
            f"(final distance to the goal, success below {load_spec(env).success_threshold} {unit})", captions,
            ["first frame", "final frame", "goal image"])
    for seed, s in per_seed.items():
        log.info("%s/%s seed %d: success %.3f, final distance %.4f over %d episodes",
                 env, method, seed, s["success_rate"], s["final_distance"], cfg["episodes"])
    log_evaluation(env, method, params, per_seed, metas, picture, out_csv)
    return out_csv


def protocol_episodes(env_name: str, image_size: int, runs: Path | None, vae: Path | None, eval_seed: int,
                      pictured: frozenset, groups: list[list[tuple[int, int]]], device: str = "cpu",
                      teacher: bool = False):
    """Yield {(seed, i): result} for each group of the protocol's episodes, (seed, episode) pairs of
    one seed, stepped together in as many envs as the largest group has, with each seed's policy from
    `runs`/seed<k> (through `vae` if given, else its own) acting on `device`, or with the env's
    scripted teacher (`teacher`); the episodes in `pictured` keep their frames. Any process gives
    the same results."""
    import torch

    from visgoal.agents import load_policy
    from visgoal.envs import make_env
    from visgoal.evaluation import episode_seed, run_episodes

    torch.set_num_threads(1)
    prepare(device)  # a spawned process has its own torch: CUDA's determinism flags again
    policies = {} if teacher else {seed: load_policy(paths.seed_dir(runs, seed), vae, device)[:2]
                                   for seed in sorted({s for group in groups for s, _ in group})}
    needs_images = any(view.needs_images for view, _ in policies.values())
    with contextlib.ExitStack() as stack:
        envs = [stack.enter_context(make_env(env_name, image_size=image_size, render_images=needs_images or bool(pictured)))
                for _ in range(max(map(len, groups), default=0))]
        if teacher:
            from visgoal.teachers import teacher_agent

            scripted = teacher_agent(envs)  # reads each env's simulator; acts through its actions
        for group in groups:
            view, policy = scripted if teacher else policies[group[0][0]]
            for env, episode in zip(envs, group):
                env.render_images = needs_images or episode in pictured  # the sim is unaffected by rendering
            results = run_episodes(envs, view, policy, [episode_seed(eval_seed, i) for _, i in group],
                                   frames={k for k, episode in enumerate(group) if episode in pictured})
            yield dict(zip(group, results))


def log_evaluation(env, method, params, per_seed, metas, picture, out_csv) -> None:
    """Each seed's summary, into its training run (the newest of that name that saw what the policy
    sees: crl on latents and on pixels share a name), else a new one."""
    import mlflow

    from visgoal import tracking

    for seed, s in per_seed.items():
        with tracking.run(env, method, params.profile, seed,
                          run_id=tracking.latest_run(env, method, params.profile, seed,
                                                     view=metas[seed].get("view", {}).get("kind"))):
            mlflow.log_metrics({f"final_eval/{k}": v for k, v in s.items()}, step=int(metas[seed].get("env_steps", 0)))
            mlflow.set_tag("evaluation_device", params["device"])  # where its policy acted (`device`: training's)
            mlflow.log_artifact(str(out_csv), artifact_path="evaluation")
            if picture is not None and seed == next(iter(per_seed)):
                mlflow.log_artifact(str(picture), artifact_path="evaluation")
            experiment = mlflow.active_run().info.experiment_id
    log.info("compare the runs: `mlflow ui`, then %s", tracking.view_path(experiment))


# --- report -------------------------------------------------------------------------------
def report(results: Path, out: Path, params: Params) -> Path:
    from visgoal.report import report as write

    check_writable(Path(out) / paths.REPORT_FILES[0])
    return write(results, out, params)
