# visgoal pipeline. Rules live in workflow/rules/; parameters come from params.yaml.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"


rule all:
    input:
        expand("results/{env}/vae_dataset.h5", env=config["envs"]),
