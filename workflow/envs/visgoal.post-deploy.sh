#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda env (workflow/envs/visgoal.yaml), from the
# working directory, the project root: install the visgoal package itself, without touching the
# pinned dependencies.
set -euo pipefail
python -m pip install --no-deps -e .
