"""params.yaml: profiles, overrides, and one clear line for every mistake."""

import subprocess
import sys

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


def test_set_overrides_and_rejects_unknown_keys(root):
    params = load_params(root / "params.yaml", "smoke", ["dataset.frames=128", "render.image_size=32"])
    assert params["dataset"]["frames"] == 128 and params["render"]["image_size"] == 32
    with pytest.raises(ConfigError, match="unknown key 'framez'"):
        load_params(root / "params.yaml", "smoke", ["dataset.framez=3"])
    with pytest.raises(ConfigError, match="dataset.frames"):
        load_params(root / "params.yaml", "smoke", ["dataset.frames=seven"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_params(root / "params.yaml", "smoke", ["dataset.frames"])


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
