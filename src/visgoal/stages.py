"""The pipeline's stages, one function each: what `python -m visgoal <stage>` runs.

    demos       envs/<env>.yaml (or a policy.pt)     -> demos.h5, demos.png
    dataset     envs/<env>.yaml (and demos.h5)       -> vae_dataset.h5, dataset_samples.png
    train_vae   vae_dataset.h5                       -> vae.pt, vae_metrics.json, vae_history.csv, vae_recon.png
    train       (image agents: vae.pt, its dataset)  -> <method>/seed<k>/{policy.pt, curve.csv[, vae.pt]}
    evaluate    every seed's policy.pt               -> <method>_eval.{csv,json,png}
    report      every evaluation and curve           -> report/
Each reads only its inputs and writes only its outputs, atomically; the file names are
visgoal.paths'. The work itself lives below: demos.py, data/, vae/, agents/, evaluation.py, report.py.
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


# --- demos --------------------------------------------------------------------------------
def demos(env: str, out: Path, params: Params, policy: Path | None = None, progress: bool = True) -> Path:
    """Record `demos.episodes` demonstrations of the env's scripted teacher (or of `policy`, a run's
    policy.pt): demos.h5 (visgoal.data.demos's layout) and demos.png, a few of them; MLflow's run `demos`."""
    from visgoal.data import write_demos
    from visgoal.data.dataset import package_versions
    from visgoal.demos import demo_source, picture_rows, record_demos
    from visgoal.envs import load_spec
    from visgoal.evaluation import demo_seed_clash
    from visgoal.figures import save_labelled_grid

    cfg = params["demos"]
    if clash := demo_seed_clash(cfg, params["evaluate"], params["dataset"]):
        raise ValueError(clash)
    out = Path(out)
    picture = out.with_name(paths.demos_picture(env).name)
    check_writable(out)
    check_writable(picture)
    params = use_device(params)
    view, acting, source = demo_source(env, policy, params["device"])  # a bad source fails here, at once
    log_renderer(params["device"])
    start, outcomes = time.perf_counter(), []

    def episodes():
        for episode in record_demos(env, params, view, acting, progress=progress):
            outcomes.append((len(episode["actions"]), episode["success"]))
            yield episode

    spec = load_spec(env)
    write_demos(out, episodes(), cfg["episodes"],
                {"env": env, "gym_id": spec.gym_id, "source": source, "seed": cfg["seed"],
                 "image_size": spec.image_size or params["render"]["image_size"], "versions": package_versions(),
                 "params": {"profile": params.profile, "demos": cfg, "render": params["render"]}})
    seconds = time.perf_counter() - start
    steps, success = sum(n for n, _ in outcomes), float(np.mean([ok for _, ok in outcomes]))
    log.info("%d demonstrations (%s) in %.1f s: %d steps, success %.2f, %.1f MB", len(outcomes), source, seconds,
             steps, success, out.stat().st_size / 1e6)
    rows, labels = picture_rows(out)
    save_labelled_grid(rows, picture, f"{env}: demonstrations of the {source.split(':')[0]} (seed {cfg['seed']}, noise "
                       f"{cfg['noise']}): {len(outcomes)} episodes, success {success:.2f}", labels,
                       ["first frame", "middle frame", "final frame", "goal image"])
    log.info("wrote %s and %s", out, picture)
    log_demos(env, params, source, out, picture, policy,
              {"demos/success_rate": success, "demos/episodes": len(outcomes), "demos/steps": steps,
               "demos/mean_length": steps / len(outcomes), "demos/seconds": seconds,
               "demos/megabytes": out.stat().st_size / 1e6})
    return out


def log_demos(env: str, params: Params, source: str, out: Path, picture: Path, policy: Path | None,
              metrics: dict) -> None:
    """The stage's MLflow run, `demos`: its parameters, the source, what it recorded, demos.png."""
    import mlflow

    from visgoal import tracking
    from visgoal.config import project_root

    inputs = {"env_spec": project_root() / "envs" / f"{env}.yaml", **({"policy": policy} if policy else {})}
    flat = {k: v for k, v in params.flat().items() if k.split(".")[0] in ("device", "render", "demos")}
    with tracking.run(env, "demos", params.profile, params=flat, inputs=inputs):
        mlflow.set_tags({"source": source, "demos_md5": tracking.file_hash(out)})
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(picture))


# --- dataset ------------------------------------------------------------------------------
def dataset(env: str, out: Path, params: Params, demos_path: Path | None = None, progress: bool = True) -> Path:
    """Collect the VAE's image dataset (half goal images, half observations) and its sample picture;
    `dataset.demo_share` of its frames from the demonstrations `demos_path` (none read where it is 0)."""
    from visgoal.data import write_dataset
    from visgoal.figures import save_labelled_grid

    cfg = params["dataset"]
    demo_frames = 2 * round(cfg["demo_share"] * cfg["frames"] / 2)  # even: pairs, as the rest
    check_writable(out)
    # torch does not run here, but MuJoCo's EGL renderer follows the job's GPU: the VAE learns from
    # pictures of the renderer the agents will see through
    log_renderer(use_device(params)["device"])
    start = time.perf_counter()
    recorded = {k: v for k, v in cfg.items() if k != "demo_share" or v}  # at 0, the same file as before the share
    write_dataset(env, out, frames=cfg["frames"], seed=cfg["seed"], image_size=params["render"]["image_size"],
                  chunk_frames=cfg["chunk_frames"], compression_level=cfg["compression_level"],
                  attrs={"profile": params.profile, "dataset": recorded, "render": params["render"]},
                  progress=progress, processes=params["speed"]["processes"], demos=demos_path, demo_frames=demo_frames)
    seconds = time.perf_counter() - start
    log.info("%d frames (%d of them demonstrations') in %.1f s: %.1f frames/s", cfg["frames"], demo_frames, seconds,
             cfg["frames"] / seconds)
    samples = Path(out).with_name(paths.dataset_samples(env).name)
    rows, labels = sample_rows(out)
    save_labelled_grid(rows, samples, f"{env}: VAE dataset of {cfg['frames']} frames, evenly spaced samples", labels)
    log.info("wrote %s and %s", out, samples)
    return Path(out)


def log_renderer(device: str) -> None:
    """Log the OpenGL renderer of this stage's pictures, once per run (its worker processes make their
    contexts as this one does: the same MUJOCO_GL and EGL device)."""
    from visgoal.envs.render import gl_context
    from visgoal.gl import log_renderer as log_gl

    gl_context()
    log_gl(device)


def sample_rows(path: Path, columns: int = 8) -> tuple[list[list[np.ndarray]], list[str]]:
    """Observations above goal images, like Figure 3 of the image-based TDM report; then the
    demonstrations' frames, where it has some. The rows and their labels."""
    from visgoal.data import ImageDataset

    data = ImageDataset(path)
    is_goal = data.read("is_goal", slice(None))
    own = len(data) - int(data.attrs.get("demo_frames", 0))  # the demonstrations' frames, if any, come last
    picks = {"observations\n(random actions)": np.flatnonzero(~is_goal[:own]),
             "goal images": np.flatnonzero(is_goal[:own]), "demonstrations": np.arange(own, len(data))}
    rows, labels = [], []
    for label, pick in picks.items():
        if len(pick):
            index = pick[np.linspace(0, len(pick) - 1, min(columns, len(pick))).astype(int)]
            rows.append(list(data.images(np.unique(index))))
            labels.append(label)
    data.close()
    return rows, labels


# --- train-vae and train ------------------------------------------------------------------
def train_vae(env: str, dataset_path: Path, out: Path, params: Params, progress: bool = True) -> dict:
    from visgoal.vae.train import train_vae as fit

    check_writable(out)
    return fit(env, dataset_path, out, use_device(params), progress=progress)


def reads_demos(method: str, params) -> bool:
    """Whether a method's training reads its env's demonstrations (demos.h5, `train --demos`) with these
    parameters (the env's own tuning resolved): an offline method (gcbc) always, any other where
    `demo_learning.enabled`: the agent class's `reads_demos`, which the Workspace asks too."""
    from visgoal.agents import agent_class

    return agent_class(method).reads_demos(params)


def dag_views(methods: list[str], params, tuned: dict) -> dict[str, str]:
    """What each of the DAG's methods sees (agents.view_kind: state, latent or pixels), which picks its
    training rule (Snakemake) and stage (dvc.yaml) for every env at once, from params.yaml. `tuned`
    maps each env to its resolved parameters: an env file that would make a method see something else
    fails in one line, rather than the DAG running it through the wrong rule."""
    from visgoal.agents import view_kind
    from visgoal.config import ConfigError

    views = {method: view_kind(method, params) for method in methods}
    for env, env_params in tuned.items():
        for method in methods:
            if (own := view_kind(method, env_params)) != views[method]:
                raise ConfigError(
                    f"envs/{env}.yaml makes {method} see {own}, params.yaml {views[method]}; the DAG picks each "
                    f"method's rule for all envs from params.yaml: set it there, or train this env's {method} with "
                    f"`python -m visgoal train` yourself")
    return views


def train_sections(method: str, params) -> list[str]:
    """The params.yaml sections a method's training reads with these parameters (the env's own tuning
    resolved), in one order: its Snakemake rule's `settings`, its dvc.yaml stage's `params` (after
    `profile`) and the rows of `visgoal params --method`. An image method adds render, image_agents and
    its own section, one on latents vae; an offline method (gcbc) reads no td3 or replay (no critic, no
    replay of its own) and, on pixels, no image_agents; `demo_learning` where the run learns from
    demonstrations beside its own experience (not gcbc: the demonstrations are all it reads)."""
    from visgoal.agents import view_kind

    return training_sections(method, view_kind(method, params), reads_demos(method, params))


def training_sections(method: str, kind: str, demos: bool) -> list[str]:
    """`train_sections` of a method that sees `kind` (state, latent or pixels) and reads demonstrations
    (`demos`) or not: what dvc.yaml's generator lists for a stage, which knows both."""
    from visgoal.agents import agent_class

    offline, image = agent_class(method).offline, method != "td3"
    return ["device", *(["render"] if image else []), "train", *([] if offline else ["td3", "replay"]), "evaluate",
            *(["vae"] if kind == "latent" else []),
            *(["image_agents"] if image and (kind == "latent" or not offline) else []), *([method] if image else []),
            *(["demo_learning"] if demos and not offline else [])]


def train(env: str, method: str, seed: int, out: Path, params: Params, vae: Path | None = None,
          dataset_path: Path | None = None, progress: bool = True, demos: Path | None = None) -> Path:
    from visgoal.agents.workspace import train as run

    check_writable(Path(out) / paths.POLICY)
    return run(env, method, seed, out, use_device(params), vae=vae, dataset=dataset_path, progress=progress,
               demos=demos)


# --- evaluate -----------------------------------------------------------------------------
TEACHER = paths.TEACHER  # `evaluate --method teacher`: the env's scripted teacher (visgoal.teachers), no training


def evaluate(env: str, method: str, out_csv: Path, params: Params, seeds=None, eval_seed: int | None = None,
             runs: Path | None = None, vae: Path | None = None, progress: bool = True) -> Path:
    """Every seed's policy on the protocol's fixed episodes: `<method>_eval.csv` (a row per seed and
    episode), `.json` (the summary over seeds) and `.png` (first frame, final frame, goal image).
    Each seed's episodes run in groups of `evaluate.batch`, stepped together (`run_episodes`), and
    `speed.processes` processes share the groups; each group is the same whoever runs it."""
    from tqdm import tqdm

    from visgoal.agents import load_policy
    from visgoal.envs import load_spec
    from visgoal.evaluation import COLUMNS, demo_seed_clash, summary, write_summary
    from visgoal.figures import save_labelled_grid
    from visgoal.processes import deal, share_out

    check_writable(out_csv)
    params = use_device(params)
    cfg, device = params["evaluate"], params["device"]  # where the policies act
    eval_seed = cfg["eval_seed"] if eval_seed is None else eval_seed
    if clash := demo_seed_clash(params["demos"], {**cfg, "eval_seed": eval_seed}, params["dataset"]):
        raise ValueError(clash)  # the protocol's episodes would be demonstrations'
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
