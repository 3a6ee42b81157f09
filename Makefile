# Two commands: `make run` (the main job) and `make test` (the suite).
# Each sets up what it needs, idempotently: Debian GL libraries, .venv, the package, the offline
# page of `dvc plots show`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
VEGA := .vega
VEGA_TARBALLS := $(VEGA)/vega-5.20.2.tgz $(VEGA)/vega-lite-5.2.0.tgz $(VEGA)/vega-embed-6.18.2.tgz
PLOTS_TEMPLATE := $(VEGA)/dvc_plots.html
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

setup: gl $(STAMP) $(PLOTS_TEMPLATE)

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

# `dvc plots show` without a network. DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN, so
# offline it draws nothing; these are the versions it names (dvc_render's VegaRenderer.SCRIPTS), from
# npm (`npm pack`: the packages' own bundles, integrity-checked, none of their dependencies), inlined
# into an HTML template that .dvc/config.local names (plots.html_template, read relative to .dvc/).
# The key is written only after the template, which DVC needs whenever the key is set (a template
# deleted by hand: `make setup` writes it again). VEGA, VEGA_TARBALLS and PLOTS_TEMPLATE: at the top.
$(VEGA)/%.tgz:
	@if ! command -v npm >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm; \
	fi
	mkdir -p $(VEGA)
	npm pack --silent --pack-destination $(VEGA) $$(echo $* | sed -E 's/-([0-9][^-]*)$$/@\1/') >/dev/null

# Each package's build/<name>.min.js in its own <script>; DVC fills {plot_divs} and {refresh_tag},
# and the page has no {scripts}, where DVC would put its CDN's.
$(PLOTS_TEMPLATE): $(VEGA_TARBALLS) | $(STAMP)
	{ printf '<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<title>DVC Plot</title>\n'; \
	  for tarball in $(VEGA_TARBALLS); do \
		name=$$(basename $$tarball .tgz); \
		printf '<script>\n'; tar -xzOf $$tarball package/build/$${name%-*}.min.js; printf '\n</script>\n'; \
	  done; \
	  printf '<style>\ntable {\n    border-spacing: 15px;\n}\n</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'; \
	} > $@.tmp
	mv $@.tmp $@
	$(VENV)/bin/dvc config --local plots.html_template ../$@

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
