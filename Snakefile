# visgoal pipeline. Rules live in workflow/rules/; parameters come from params.yaml.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


onstart:
    # Create the MLflow store once, before parallel jobs start.
    shell(f"{PYTHON} -c 'from visgoal.tracking import init_store; init_store()'")


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/agents.smk"


rule all:
    input:
        expand("results/{env}/vae.pt", env=ENVS),
