"""The README and docs/: every relative link resolves, and every parameter they name exists.

A parameter is named in backticks as `section.key`, `section.key.sub` or `section.key=value`,
section one of params.yaml's. Outside docs/experiments/ it must be in the schema and not retired;
a study in docs/experiments/ may name a retired option only where it also names the git tag
that still has it (config.RETIRED_TAG).
"""

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from visgoal.config import RETIRED_TAG, retired_options

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SCHEMA = json.loads(resources.files("visgoal.schema").joinpath("params.schema.json").read_text())
SECTIONS = set(SCHEMA["properties"]) - {"profile", "envs", "methods", "seeds"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([a-z_0-9]+(?:\.[a-z_0-9]+)+)(?:=([^`]*))?`")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def in_schema(keys: list[str]) -> bool:
    """Whether the dotted key names a parameter of the schema (env_overrides.<env>. and
    profiles.<name>. are prefixes over the sections)."""
    if keys[0] in ("env_overrides", "profiles"):
        keys = keys[2:]
    node = SCHEMA
    for key in keys:
        names = node.get("propertyNames", {}).get("enum")
        if names is not None:  # image_agents.td3: any td3 key
            return key in names
        properties = node.get("properties") or SCHEMA["$defs"].get(node.get("$ref", "").split("/")[-1], {}).get(
            "properties", {})
        if key not in properties:
            return False
        node = properties[key]
    return True


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading '{anchor}')")
    return broken


def named_parameters(text: str) -> tuple[list[str], list[str]]:
    """(unknown, retired): the parameters named in backticks that the schema lacks, and the retired ones."""
    unknown, retired = [], []
    for name, value in CODE.findall(text):
        keys = name.split(".")
        if keys[0] not in SECTIONS:
            continue
        if in_schema(keys):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value
            if value and retired_options({name: parsed}, gone_keys=False):
                retired.append(f"{name}={value}")  # a retired value of a key that stays
        elif retired_options({name: None}, gone_keys=True):
            retired.append(name)  # a key that is gone
        else:
            unknown.append(name)
    return unknown, retired


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert not (broken := broken_links(page)), f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_parameter_named_exists(page):
    text = page.read_text()
    study = page.parent.name == "experiments"
    unknown, retired = named_parameters(text)
    assert not unknown, f"{page.relative_to(ROOT)} names parameters the schema lacks: {sorted(set(unknown))}"
    if retired and not (study and RETIRED_TAG in text):
        pytest.fail(f"{page.relative_to(ROOT)} names retired options {sorted(set(retired))}"
                    + ("" if study else " outside docs/experiments/") + f" without their tag {RETIRED_TAG}")


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A broken link, an unknown parameter and a retired one are each caught."""
    assert in_schema(["tdm", "tau_max"]) and in_schema(["image_agents", "td3", "actor_average"])
    assert in_schema(["env_overrides", "point_maze", "crl", "loss"]) and in_schema(["replay", "relabel", "future"])
    assert not in_schema(["tdm", "tau_maxx"]) and not in_schema(["image_agents", "td3", "absorbing"])
    assert retired_options({"crl.loss": "binary"}, gone_keys=False) and not retired_options({"crl.loss": "infonce"})
    assert slug("The `smoke` profile, step 2!") == "the-smoke-profile-step-2"
    page = tmp_path / "page.md"
    page.write_text("# Top\n[a](page.md#top) [b](missing.md) [c](page.md#nowhere) [d](https://example.org)\n")
    assert broken_links(page) == ["missing.md (no file)", "page.md#nowhere (no heading 'nowhere')"]
    unknown, retired = named_parameters("`tdm.tau_max=3` `tdm.tau_maxx` `crl.loss=binary` `td3.absorbing` "
                                        "`crl.loss=td_infonce` `params.yaml` `vae.latent_dim`")
    assert unknown == ["tdm.tau_maxx"] and retired == ["crl.loss=binary", "td3.absorbing"]
