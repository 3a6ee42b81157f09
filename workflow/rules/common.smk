import sys

from visgoal.config import load_params

# The interpreter running Snakemake is the project's virtualenv: stages use it too.
PYTHON = sys.executable

# The same resolution the stages use: params.yaml, the profile ($VISGOAL_PROFILE or its
# `profile` key), validated against the schema before any job starts.
PARAMS = load_params()
ENVS = PARAMS["envs"]
METHODS = PARAMS["methods"]
SEEDS = PARAMS["seeds"]


def agent_inputs(wildcards):
    """Image agents need the environment's VAE; the state-based td3 baseline does not."""
    return [] if wildcards.method == "td3" else [f"results/{wildcards.env}/vae.pt"]
