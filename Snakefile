# visgoal pipeline: the same DAG as dvc.yaml, each job one `python -m visgoal <stage>` command.
# Rules live in workflow/rules/; parameters (and the envs x methods x seeds of the DAG) come from
# params.yaml through visgoal.config, the profile from $VISGOAL_PROFILE or params.yaml's `profile`.
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"


wildcard_constraints:
    env="|".join(ENVS),
    method="|".join(METHODS),
    seed=r"\d+",


include: "workflow/rules/dataset.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/agents.smk"
include: "workflow/rules/report.smk"


onstart:
    # Create the MLflow store once, before parallel jobs start (they would race in its migration).
    shell("python -c 'from visgoal.tracking import init_store; init_store()'")


rule all:
    default_target: True
    input:
        rules.report.output,
