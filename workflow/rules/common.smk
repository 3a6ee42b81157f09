import sys

# The interpreter running Snakemake is the project's virtualenv: stages use it too.
PYTHON = sys.executable
