# visgoal pipeline: the same DAG as dvc.yaml, each job one `python -m visgoal <stage>` command.
# Rules live in workflow/rules/; parameters (and the envs x methods x seeds of the DAG) come from
# params.yaml through visgoal.config, the profile from $VISGOAL_PROFILE or params.yaml's `profile`.
import time

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"


wildcard_constraints:
    env="|".join(ENVS),
    method="|".join(DAG_METHODS),
    seed=r"\d+",


include: "workflow/rules/demos.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/agents.smk"
include: "workflow/rules/report.smk"


STARTED = time.time()  # what this run writes is newer


onstart:
    # Create the MLflow store once, before parallel jobs start (they would race in its migration).
    shell("python -c 'from visgoal.tracking import init_store; init_store()'")


onsuccess:
    # DVC's record of what this run built (dvc.lock), so that `dvc status` and `dvc repro` agree with
    # it. DVC's stages are the default profile's (results/), so another profile's run records nothing.
    if PARAMS.profile == "default" and os.path.isdir(".dvc"):
        from visgoal.dvcfile import record

        built = record(STARTED)
        print(f"dvc.lock records the {len(built)} stages this run built" if built else "dvc.lock: nothing built")


rule all:
    default_target: True
    input:
        rules.report.output,
        [str(paths.demos(env, ROOT)) for env in TEACHER_ENVS],
