import os
import sys

from visgoal import paths
from visgoal.config import load_params
from visgoal.device import requests_gpu
from visgoal.stages import dag_views, reads_demos, train_sections
from visgoal.teachers import TEACHERS

# Every stage is `python -m visgoal <sub-command> ...`, literally the `cmd` of its dvc.yaml stage.
# `python` is whatever comes first on PATH: the conda env of the rule under `--sdm conda`, otherwise
# the interpreter running Snakemake (the project's virtualenv, activated or not), put first here.
os.environ.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))

# The same resolution the stages use: params.yaml (in $VISGOAL_ROOT, else the working directory),
# then the profile ($VISGOAL_PROFILE, else its `profile` key), validated before any job starts.
PARAMS = load_params()
ENVS = PARAMS["envs"]
METHODS = PARAMS["methods"]
SEEDS = PARAMS["seeds"]
# gcbc learns from demonstrations alone: a method of the DAG only for the envs with a scripted teacher
# (rule train_gcbc; results/<env>/gcbc_eval.csv, in `all`), never one of params.yaml's `methods`, which
# every env, the report and `make run`'s DAG share.
GCBC = paths.GCBC
if GCBC in METHODS:
    raise ValueError(f"methods: {GCBC} learns from demonstrations, which only the envs with a scripted teacher have; "
                     f"the DAG runs it for those (results/<env>/{GCBC}_eval.csv, in the report): take it out of `methods`")
DAG_METHODS = [*METHODS, GCBC]

# A GPU for each job that runs torch or renders, where `device` is one (cuda, cuda:N; auto where this
# machine has one): the `gpu` resource, which the SLURM executor asks sbatch for (--gpus). Nothing on a CPU.
GPU = int(requests_gpu(PARAMS["device"]))

# The conda environment of every rule (workflow/envs/visgoal.yaml, pinned like pyproject.toml).
CONDA_ENV = "../envs/visgoal.yaml"


# A stage of one environment reads its own tuning over the sections (`params:` in envs/<env>.yaml).
ENV_PARAMS = {env: load_params(env=env) for env in ENVS}

# What each method sees (state, latent or pixels; crl's depends on crl.representation, gcbc's on
# gcbc.representation): which training rule runs it, the same in every env (an env file that differs
# fails in one line). Wildcard constraints; "(?!)" matches nothing.
VIEWS = dag_views(DAG_METHODS, PARAMS, ENV_PARAMS)
LATENT_METHODS = "|".join(m for m in METHODS if VIEWS[m] == "latent") or "(?!)"
PIXEL_METHODS = "|".join(m for m in METHODS if m != "td3" and VIEWS[m] != "latent") or "(?!)"  # no VAE

# The environments with a scripted teacher (visgoal.teachers): its demonstrations (rule demos) and its
# evaluation (rule teacher). Those whose dataset takes a share of demonstrations read them.
TEACHER_ENVS = [env for env in ENVS if env in TEACHERS]
TEACHER_ENV = "|".join(TEACHER_ENVS) or "(?!)"
DEMO_ENVS = [env for env in ENVS if ENV_PARAMS[env]["dataset"]["demo_share"] > 0]
if set(DEMO_ENVS) - set(TEACHER_ENVS):
    raise ValueError(
        f"dataset.demo_share > 0 for {', '.join(sorted(set(DEMO_ENVS) - set(TEACHER_ENVS)))}, which has no scripted "
        "teacher to record demonstrations in the DAG; set its share to 0, or record them with `python -m visgoal "
        "demos --policy ...` and run its dataset stage yourself"
    )


# The envs whose td3, rig, tdm and crl runs also learn from its demonstrations (demo_learning.enabled in
# their resolved tuning): rules train_td3_demos, train_image_demos and train_pixels_demos, which read
# demos.h5; the other envs' runs are the plain rules' (train_td3, train_image, train_pixels), as before.
DEMO_LEARNING_ENVS = [env for env in ENVS if ENV_PARAMS[env]["demo_learning"]["enabled"]]
if set(DEMO_LEARNING_ENVS) - set(TEACHER_ENVS):
    raise ValueError(
        f"demo_learning.enabled for {', '.join(sorted(set(DEMO_LEARNING_ENVS) - set(TEACHER_ENVS)))}, which has no "
        "scripted teacher to record demonstrations in the DAG; enable it in the env files of envs with one "
        f"({', '.join(TEACHER_ENVS) or 'none'}), or record them with `python -m visgoal demos --policy ...` and run "
        "`python -m visgoal train --demos ...` yourself"
    )
DEMO_LEARNING_ENV = "|".join(DEMO_LEARNING_ENVS) or "(?!)"
PLAIN_ENV = "|".join(env for env in ENVS if env not in DEMO_LEARNING_ENVS) or "(?!)"


def settings(*sections, env=None):
    """The resolved params.yaml sections a stage reads (the `params` of its dvc.yaml stage), as the
    stage of environment `env` resolves them.

    Given as a rule's `params`, a change to one of them reruns that rule's jobs (Snakemake's
    `params` rerun trigger), and nothing else: an environment's override reruns that environment's."""
    values = (ENV_PARAMS[env] if env else PARAMS).as_dict()
    return {"profile": PARAMS.profile, **{name: values[name] for name in sections}}


# Every file name comes from visgoal.paths, the one owner of the results layout; a pattern is a
# path with wildcards in it, e.g. RUN = results/{env}/{method}/seed{seed}. Each profile has its own
# tree (ROOT: results/ for the default profile, results/<profile>/ otherwise), so that running one
# profile never reruns nor overwrites another's jobs.
ROOT = paths.root(PARAMS.profile)
RUN = str(paths.run_dir("{env}", "{method}", "{seed}", ROOT))


def logged(stage):
    """A job's `log:` and `benchmark:` files, e.g. logged("{env}/dataset")."""
    return str(paths.log_file(stage, ROOT)), str(paths.benchmark_file(stage, ROOT))


def runs(wildcards, *names):
    """`results/<env>/<method>/seed<k>/<name>` of every seed: what evaluate reads."""
    return [str(paths.run_dir(wildcards.env, wildcards.method, seed, ROOT) / name) for seed in SEEDS for name in names]


def dataset_inputs(wildcards):
    """The demonstrations, where the env's dataset takes a share of its frames from them."""
    return [str(paths.demos(wildcards.env, ROOT))] if wildcards.env in DEMO_ENVS else []


def train_settings(wildcards, method=None):
    """`settings` of a training job: the sections its method reads with its env's parameters
    (stages.train_sections, which `visgoal params --method` lists too): demo_learning only where the
    run learns from demonstrations, so that the other runs' params are what they were."""
    method = method or wildcards.method
    return settings(*train_sections(method, ENV_PARAMS[wildcards.env]), env=wildcards.env)


def evaluate_inputs(wildcards):
    """Each seed's policy; agents on latents also need each run's own (fine-tuned) VAE. gcbc on an env
    without a teacher is refused in one line: no demonstrations to learn from."""
    if wildcards.method == GCBC and wildcards.env not in TEACHER_ENVS:
        raise ValueError(
            f"{GCBC} learns from demonstrations alone, and {wildcards.env} has no scripted teacher to record them in "
            f"the DAG (envs with one: {', '.join(TEACHER_ENVS) or 'none'}); record them with `python -m visgoal demos "
            f"--env {wildcards.env} --policy ...` and train it with `python -m visgoal train --demos ...` yourself"
        )
    if VIEWS[wildcards.method] == "latent":
        return runs(wildcards, paths.POLICY, paths.RUN_VAE)
    return runs(wildcards, paths.POLICY)

