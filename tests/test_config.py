"""params.yaml: profiles, overrides, and one clear line for every mistake."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import pytest

from visgoal.config import ConfigError, load_params


def test_profiles_resolve(root, monkeypatch):
    monkeypatch.delenv("VISGOAL_PROFILE", raising=False)
    default = load_params(root / "params.yaml")
    assert default.profile == "default"
    smoke = load_params(root / "params.yaml", profile="smoke")
    paper = load_params(root / "params.yaml", profile="paper")
    assert smoke["dataset"]["frames"] < default["dataset"]["frames"] < paper["dataset"]["frames"]
    assert paper["render"]["image_size"] == 128
    monkeypatch.setenv("VISGOAL_PROFILE", "paper")
    assert load_params(root / "params.yaml").profile == "paper"


def test_under_dvc_the_sections_are_what_runs(root, monkeypatch):
    """DVC records and `dvc exp run -S` sets params.yaml's sections: under DVC a profile that would
    override them is refused in one line, and the default profile runs the sections as they are."""
    import yaml

    monkeypatch.setenv("DVC_STAGE", "train_image@fetch_reach-tdm-0")  # what DVC sets for a stage command
    monkeypatch.delenv("VISGOAL_PROFILE", raising=False)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    assert load_params(root / "params.yaml", "default").as_dict() == {
        k: v for k, v in raw.items() if k not in ("profile", "profiles")}
    for profile in ("smoke", "paper"):
        with pytest.raises(ConfigError, match=rf"profile '{profile}' overrides params.yaml's sections \(.*dvc.*"
                                              rf"VISGOAL_PROFILE={profile} snakemake"):
            load_params(root / "params.yaml", profile)
    monkeypatch.delenv("DVC_STAGE")
    assert load_params(root / "params.yaml", "smoke")["seeds"] == raw["profiles"]["smoke"]["seeds"]


def test_set_overrides_and_rejects_unknown_keys(root):
    params = load_params(root / "params.yaml", "smoke", ["dataset.frames=128", "render.image_size=32"])
    assert params["dataset"]["frames"] == 128 and params["render"]["image_size"] == 32
    with pytest.raises(ConfigError, match="unknown key 'framez'"):
        load_params(root / "params.yaml", "smoke", ["dataset.framez=3"])
    with pytest.raises(ConfigError, match="dataset.frames"):
        load_params(root / "params.yaml", "smoke", ["dataset.frames=seven"])
    # out of its range: the message names the --set, not an environment's tuning it was merged under
    with pytest.raises(ConfigError, match=r"\(profile smoke, after --set\): key 'crl.discount'") as bad:
        load_params(root / "params.yaml", "smoke", ["crl.discount=2"], env="point_maze")
    assert "envs/point_maze.yaml" not in str(bad.value)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_params(root / "params.yaml", "smoke", ["dataset.frames"])


def test_set_adds_a_td3_key_to_the_image_agents_overrides(root):
    """`image_agents.td3` holds the few td3 keys the image agents change; --set may add any other
    td3 key there (the schema's list), and still refuses a key td3 does not have."""
    params = load_params(root / "params.yaml", "smoke", ["image_agents.td3.actor_average=0.001"])
    assert "actor_average" not in load_params(root / "params.yaml", "smoke")["image_agents"]["td3"]
    assert params["image_agents"]["td3"]["actor_average"] == 0.001 and params["td3"]["actor_average"] == 0.0
    with pytest.raises(ConfigError, match="unknown key 'actor_averag'"):
        load_params(root / "params.yaml", "smoke", ["image_agents.td3.actor_averag=0.001"])


def with_tuning(root, tmp_path, env: str, tuning) -> Path:
    """A copy of params.yaml and envs/ in tmp_path, envs/<env>.yaml's `params:` replaced by `tuning`."""
    import shutil

    import yaml

    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(root / "envs", tmp_path / "envs")
    spec = yaml.safe_load((tmp_path / "envs" / f"{env}.yaml").read_text())
    spec["params"] = tuning
    (tmp_path / "envs" / f"{env}.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "params.yaml"


def test_an_environment_tunes_its_own_stages(root, tmp_path):
    """`params:` in envs/<env>.yaml: that environment's stages read its values over the sections;
    another environment's, and a command of no environment, do not. A profile (a scale) wins over
    them, and --set over both."""
    import yaml

    raw = yaml.safe_load((root / "params.yaml").read_text())
    path = with_tuning(root, tmp_path, "fetch_reach", {"vae": {"latent_dim": 7}, "train": {"total_steps": 123}})
    tuned = load_params(path, "default", env="fetch_reach")
    assert tuned["vae"]["latent_dim"] == 7 and tuned["train"]["total_steps"] == 123
    assert load_params(path, "default", env="adroit_relocate")["train"] == raw["train"]  # another environment's
    assert load_params(path, "default")["vae"] == raw["vae"]  # a command of no environment
    paper = load_params(path, "paper", env="fetch_reach")
    assert paper["vae"]["latent_dim"] == raw["profiles"]["paper"]["vae"]["latent_dim"]
    assert paper["train"]["total_steps"] == raw["profiles"]["paper"]["train"]["total_steps"]
    assert load_params(path, "paper", ["vae.latent_dim=9"], env="fetch_reach")["vae"]["latent_dim"] == 9


def test_params_yaml_with_env_overrides_says_where_they_moved(root, tmp_path):
    import yaml

    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["env_overrides"] = {"fetch_reach": {"vae": {"latent_dim": 7}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"env_overrides moved .* `params:` in envs/<env>.yaml"):
        load_params(tmp_path / "params.yaml", "default")


@pytest.mark.parametrize("tuning,message", [
    ({"seeds": [1]}, r"fetch_reach.yaml: key 'params.seeds': the same for every environment"),
    ({"device": "cpu"}, r"fetch_reach.yaml: key 'params.device': the same for every environment"),
    ({"crl": {"representation": "pixels"}}, r"fetch_reach.yaml: key 'params.crl.representation'"),
    ({"vae": {"latent_dimm": 4}}, r"fetch_reach.yaml \(params\): unknown key 'vae.latent_dimm'"),
    ({"vae": {"latent_dim": 0}}, r"fetch_reach.yaml \(params\): key 'vae.latent_dim'"),
    ({"crl": 3}, r"fetch_reach.yaml \(params\): key 'crl'"),
    ({"crl": {"loss": "binary"}}, r"fetch_reach.yaml \(params\): crl.loss=binary: retired"),
    ([1, 2], r"fetch_reach.yaml: key 'params': expected a mapping"),
])
def test_a_bad_environment_tuning_names_the_key(root, tmp_path, tuning, message):
    """Every environment's tuning is checked, whichever environment a command runs."""
    path = with_tuning(root, tmp_path, "fetch_reach", tuning)
    with pytest.raises(ConfigError, match=message):
        load_params(path, "default", env="point_maze")


def test_typo_in_params_names_the_key(root, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((root / "params.yaml").read_text().replace("chunk_frames: 64", "chunk_frame: 64"))
    with pytest.raises(ConfigError, match="unknown key 'dataset.chunk_frame'"):
        load_params(bad)
    bad.write_text((root / "params.yaml").read_text().replace("dataset: {frames: 64, chunk_frames: 16}",
                                                              "dataset: {frame: 64}"))
    with pytest.raises(ConfigError, match=r"profiles.smoke.*unknown key 'dataset.frame'"):
        load_params(bad)
    bad.write_text("profile: default\nenvs: [a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


@pytest.mark.parametrize("command", ["dataset", "train-vae", "train", "evaluate", "report", "bench-render"])
def test_every_subcommand_has_help_with_common_options(command):
    result = subprocess.run([sys.executable, "-m", "visgoal", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--profile", "--set", "--out"):
        assert option in result.stdout


def one_line_error(result, command: str) -> str:
    """The single error line of a failed `python -m visgoal` (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert line.startswith(f"visgoal {command}: error: ".rstrip(" ") if command else "visgoal: error: ")
    return line


def test_an_unwritable_output_fails_before_the_work(tmp_path):
    """A file where the output's folder should be: one line naming it, no run started, nothing written."""
    from conftest import run_cli

    (tmp_path / "blocker").write_text("")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--out", str(tmp_path / "blocker" / "run"), env={"MLFLOW_TRACKING_URI": uri})
    line = one_line_error(result, "train")
    assert "blocker is a file, not a folder" in line and "--out" in line
    assert not (tmp_path / "mlflow.db").exists()  # failed before the MLflow run (and the training) began
    for command in (["dataset"], ["evaluate", "--method", "td3"]):
        result = run_cli(*command, "--env", "point_maze", "--profile", "smoke", "--quiet",
                         "--out", str(tmp_path / "blocker" / "out.csv"))
        assert "blocker is a file, not a folder" in one_line_error(result, command[0])


def test_bad_environment_and_files_fail_in_one_line(tmp_path):
    from conftest import run_cli

    result = run_cli("--help", env={"MUJOCO_GL": "nonsense"})
    assert "MUJOCO_GL='nonsense' is not an OpenGL backend" in one_line_error(result, "")
    junk = tmp_path / "vae.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    result = run_cli("train", "--env", "point_maze", "--method", "rig", "--profile", "smoke", "--quiet",
                     "--vae", str(junk), "--out", str(tmp_path / "run"))
    line = one_line_error(result, "train")
    assert "not a visgoal VAE checkpoint" in line and "weights_only" not in line  # never advise unsafe loading
    result = run_cli("train", "--env", "point_maze", "--method", "rig", "--profile", "smoke", "--quiet",
                     "--set", "rig.relabel.future=0.9", "--out", str(tmp_path / "run"))
    line = one_line_error(result, "train")
    assert "'rig.relabel'" in line and "sum to 1.4" in line and "replay" not in line


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    import os

    from visgoal.files import atomic_output

    gone = 2**22 + 1  # above Linux's largest pid_max: no such process
    stale, live = tmp_path / f".out.h5.tmp-{gone}-abc", tmp_path / f".out.h5.tmp-{os.getpid()}-def"
    stale.write_text("half"), live.write_text("being written")
    with atomic_output(tmp_path / "out.h5") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "out.h5").read_text() == "done"
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("command, option, value", [
    (["train", "--method", "td3"], "--seed", "-1"),
    (["evaluate", "--method", "td3"], "--seeds", "-1"),
    (["evaluate", "--method", "td3"], "--eval-seed", "-3"),
    (["bench-render"], "--frames", "0"),
    (["train", "--method", "td3"], "--seed", "one"),
])
def test_a_count_out_of_range_names_its_option(command, option, value, tmp_path):
    """argparse refuses it before any work, in one line that names the option and what it takes."""
    from conftest import run_cli

    result = run_cli(*command, *(["--env", "point_maze"] if command[0] != "bench-render" else ["--envs", "point_maze"]),
                     "--profile", "smoke", "--quiet", option, value, "--out", str(tmp_path / "out"))
    line = one_line_error(result, command[0])
    at_least = 1 if option == "--frames" else 0
    assert f"argument {option}" in line and f"an integer >= {at_least}" in line and repr(value) in line, line
    assert not (tmp_path / "out").exists()


HEAVY_IMPORTS = """
import runpy, sys
sys.argv = ["visgoal", *{args!r}]
try:
    {call}
except SystemExit as exit:
    print("exit", exit.code)
print("heavy", sorted({{"torch", "mujoco"}} & set(sys.modules)))
"""


@pytest.mark.parametrize("flag", ["--help", "--version"])
@pytest.mark.parametrize("call", ["runpy.run_module('visgoal', run_name='__main__', alter_sys=True)",  # python -m
                                  "from visgoal.cli import main; sys.exit(main())"])                  # the script
def test_help_and_version_import_neither_torch_nor_mujoco(flag, call):
    from importlib.metadata import version

    result = subprocess.run([sys.executable, "-c", HEAVY_IMPORTS.format(args=[flag], call=call)],
                            capture_output=True, text=True)
    assert result.stdout.splitlines()[-2:] == ["exit 0", "heavy []"], result.stdout[-2000:] + result.stderr[-2000:]
    if flag == "--version":
        assert result.stdout.splitlines()[0] == f"visgoal {version('visgoal')}"


def test_subcommand_help_lists_the_environments_and_explains_seed_and_method():
    from conftest import ENVS, ROOT

    on_disk = sorted(p.stem for p in (ROOT / "envs").glob("*.yaml"))
    assert set(ENVS) <= set(on_disk)
    for command in ("train", "evaluate", "dataset", "train-vae"):
        result = subprocess.run([sys.executable, "-m", "visgoal", command, "--help"], capture_output=True, text=True,
                                env={**os.environ, "COLUMNS": "400"})  # one line per option
        assert result.returncode == 0, result.stderr[-2000:]
        (env_help,) = [line for line in result.stdout.splitlines() if line.strip().startswith("--env ENV")]
        assert ", ".join(on_disk) in env_help, env_help
        if command in ("train", "evaluate"):
            (method_help,) = [line for line in result.stdout.splitlines() if line.strip().startswith("--method")]
            assert "td3, tdm, rig, crl" in method_help and len(method_help.split("  ")[-1]) > 20, method_help
    train = subprocess.run([sys.executable, "-m", "visgoal", "train", "--help"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "400"}).stdout
    (seed_help,) = [line for line in train.splitlines() if line.strip().startswith("--seed")]
    assert "default: 0" in seed_help, seed_help


def test_params_prints_each_value_and_where_it_came_from(capsys):
    """`visgoal params`: a default, an environment's tuning, a profile's value and a --set, each named;
    with --method, only the sections its training reads."""
    from visgoal.cli import main

    assert main(["params", "--env", "inverted_pendulum", "--method", "rig", "--profile", "smoke",
                 "--set", "td3.gamma=0.9"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if not line.startswith("#")}
    assert rows["td3.gamma"] == ["0.9", "--set"]
    assert rows["image_agents.latent_frames"] == ["8", "envs/inverted_pendulum.yaml"]
    assert rows["train.total_steps"] == ["300", "profile", "smoke"]
    assert rows["td3.polyak"] == ["0.05", "params.yaml"]
    assert "tdm.tau_max" not in rows and "dataset.frames" not in rows  # rig reads neither
    assert main(["params", "--env", "point_maze", "--profile", "default"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if not line.startswith("#")}
    assert rows["vae.latent_dim"] == ["4", "envs/point_maze.yaml"] and "dataset.frames" in rows


@pytest.mark.parametrize("method, args, expected", [
    ("gcbc", ["--set", "gcbc.representation=latent"], {"device", "render", "train", "evaluate", "vae", "image_agents",
                                                       "gcbc"}),
    ("gcbc", [], {"device", "render", "train", "evaluate", "gcbc"}),
    ("td3", ["--set", "demo_learning.enabled=false"], {"device", "train", "td3", "replay", "evaluate"}),
    ("td3", ["--set", "demo_learning.enabled=true"], {"device", "train", "td3", "replay", "evaluate", "demo_learning"}),
    ("rig", ["--set", "demo_learning.enabled=true"],
     {"device", "render", "train", "td3", "replay", "evaluate", "vae", "image_agents", "rig", "demo_learning"}),
], ids=["gcbc on latents", "gcbc on pixels", "td3", "td3 with demonstrations", "rig with demonstrations"])
def test_params_of_a_method_are_the_sections_its_training_stage_reads(capsys, method, args, expected):
    """`visgoal params --method M` lists stages.train_sections, what its Snakemake rule's settings and its
    dvc.yaml stage's params hold: gcbc's own, demo_learning only where the run learns from demonstrations."""
    from visgoal.cli import main

    assert main(["params", "--env", "franka_kitchen", "--method", method, "--profile", "smoke", *args]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert {row.split(".")[0] for row in rows} == expected
