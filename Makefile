# Two commands: `make run` (the main job) and `make test` (the suite).
# Each sets up what it needs, idempotently: Debian GL libraries, .venv, the package.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
GL_PACKAGES := libegl1 libgl1-mesa-dri libosmesa6
export MUJOCO_GL ?= egl

.PHONY: run test setup gl browser slurm
# One job more than the machine has cores: a training and its update thread keep about 1.4 cores
# busy, not 2, so three trainings fill two cores where two would not. fetch_reach's three TDM
# seeds at once on two cores took 425 s, against 483-515 s two then one; the same policies.
CORES := $(shell echo $$(( $$(nproc) + 1 )))
# Then the report over what is there (results/report/summary.md: the README's results table).
run: setup
	$(VENV)/bin/snakemake --cores $(CORES) results/fetch_reach/tdm_eval.csv
	$(PY) -m visgoal report --quiet

# One worker per core, each test file on one worker (its module fixtures built once): the smoke DAG's
# file keeps both cores busy for minutes, and the rest of the suite is mostly one core's work.
test: setup browser slurm
	$(PY) -m pytest -q -n $$(nproc) --dist loadfile

setup: gl $(STAMP)

# Headless OpenGL for MuJoCo (EGL, with OSMesa as the fallback).
gl:
	@if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ldconfig -p | grep -q 'libOSMesa.so'; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(GL_PACKAGES); \
	fi

# Headless Chromium, for the test that opens `mlflow ui` as a researcher would (tests/test_mlflow_ui.py).
browser:
	@if ! command -v chromium >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

# A single-node SLURM cluster with accounting, which tests/test_slurm.py starts on loopback.
SLURM_PACKAGES := slurm-wlm slurmdbd munge mariadb-server
slurm:
	@if ! command -v slurmdbd >/dev/null || ! command -v munged >/dev/null || ! command -v mariadbd >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SLURM_PACKAGES); \
	fi

# pip installs without compiling; compileall then writes every module's bytecode on every core
# (pip compiles on one: the venv took 83 s, now 55 s). The one file it skips is torch's test of
# Python 3.12 syntax, which pip fails to compile silently too.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile torch==2.13.0   # the local CPU wheel, before anything can pull a CUDA build
	$(PY) -m pip install -q --no-compile -e '.[test]'
	$(PY) -m compileall -q -j 0 -x py312_intrinsics $(VENV)/lib
	touch $(STAMP)
