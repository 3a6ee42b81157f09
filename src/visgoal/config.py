"""Parameters: `params.yaml` + scale profile + `--set` overrides, validated by a schema.

`params.yaml` is the single source of truth for hyperparameters. Its top-level
`profile` key selects a scale (`smoke`, `default`, `paper`); the section under
`profiles.<name>` is deep-merged over the base sections. `--set a.b=value`
overrides are applied last. The result is checked against
`schema/params.schema.json` so that a typo fails with one line naming the key.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import jsonschema
import yaml

PROFILES = ("smoke", "default", "paper")
PROFILE_ENV_VAR = "VISGOAL_PROFILE"


class ConfigError(ValueError):
    """A problem with params.yaml, an env spec, or an override: one line, with the fix."""


def project_root() -> Path:
    """The directory holding params.yaml and envs/: `$VISGOAL_ROOT`, else the working directory."""
    return Path(os.environ.get("VISGOAL_ROOT", ".")).resolve()


def _schema(name: str) -> dict:
    return json.loads(resources.files("visgoal.schema").joinpath(name).read_text())


def validate(document: Any, schema_name: str, source: str) -> None:
    """Raise ConfigError naming the first offending key of `document`."""
    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    error = errors[0]
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        raise ConfigError(
            f"{source}: unknown key '{'.'.join([*map(str, error.absolute_path), extra[0]]).lstrip('.')}'"
            f" (allowed here: {', '.join(sorted(error.schema.get('properties', {})))})"
        )
    if error.validator in ("oneOf", "anyOf") and "description" in error.schema:
        # "is not valid under any of the given schemas" names no fix; the key's description does.
        raise ConfigError(f"{source}: key '{where}': expected {error.schema['description']}, got {error.instance!r}")
    raise ConfigError(f"{source}: key '{where}': {error.message}")


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected section.key=value, e.g. --set dataset.frames=256")
    dotted, raw = text.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set '{text}': empty key; expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def apply_override(params: dict, keys: list[str], value: Any) -> None:
    node = params
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"--set {'.'.join(keys)}: '{'.'.join(keys[: i + 1])}' is not a section of params.yaml")
        node = node[key]
    if keys[-1] not in node and keys[-1] not in optional_keys(keys[:-1]):
        raise ConfigError(
            f"--set {'.'.join(keys)}: unknown key '{keys[-1]}' (known: {', '.join(sorted(node))})"
        )
    node[keys[-1]] = value


def optional_keys(section: list[str]) -> list[str]:
    """The keys the schema lets a section of overrides name without params.yaml setting them
    (`image_agents.td3` takes any td3 key): `--set` may add them."""
    node = _schema("params.schema.json")
    for key in section:
        node = node.get("properties", {}).get(key, {})
    return node.get("propertyNames", {}).get("enum", [])


def with_overrides(values: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    for text in overrides:
        apply_override(values, *parse_override(text))
    return values


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (run from the project root, or set VISGOAL_ROOT)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(err, 'problem', err)}") from None


# Options that lost in docs/experiments and were removed; the tag's commit still has them.
RETIRED_TAG = "retired-options-2026-12"
# key: (is this value retired?, whether the key itself is gone: only one value was left).
RETIRED: dict[str, tuple[Callable[[Any], bool], bool]] = {
    "crl.loss": (lambda v: v == "binary", False),
    "crl.absorbing": (lambda v: v == "sink", True),          # frame is what crl does
    "crl.actor_loss": (lambda v: v == "infonce", True),      # normalized is what crl does
    "td3.absorbing": (lambda v: v == "farthest", True),      # a fall keeps its own distance
    "tdm.latent_reg": (lambda v: v != 0, True),
    "tdm.eval_tau": (lambda v: v == "countdown", False),
    "image_agents.latent_velocity": (lambda v: bool(v), True),   # latent_frames shows the past instead
    "td3.env_reward_envs": (lambda v: True, True),   # an environment's property now: oracle_reward in envs/<env>.yaml
}


def retired_options(flat: dict[str, Any], gone_keys: bool = True) -> list[str]:
    """The `key=value` entries of a flat mapping of parameters that name a retired option: a retired
    value, or (`gone_keys`, for params files) a key that is gone whatever its value. Keys may carry
    a prefix (`profiles.<name>.`, `params.` in an env file, or `image_agents.` before `td3.`)."""
    found = []
    for key, value in flat.items():
        for name, (is_retired, gone) in RETIRED.items():
            if (key == name or key.endswith("." + name)) and ((gone and gone_keys) or is_retired(value)):
                found.append(f"{name}={value}")
    return found


def retired_error(source: str, found: list[str]) -> str:
    return (f"{source}: {', '.join(found)}: retired, the code that had it is git tag {RETIRED_TAG} "
            f"(git checkout {RETIRED_TAG}); remove it")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """`{"vae": {"beta": 1.0}}` -> `{"vae.beta": 1.0}`."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def read_sections(path: Path) -> dict:
    """A params file's top-level mapping of sections, or a one-line error."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


@dataclass(frozen=True)
class Params:
    """Fully resolved parameters: what a stage actually ran with."""

    profile: str
    values: dict

    def __getitem__(self, section: str) -> Any:
        return self.values[section]

    def as_dict(self) -> dict:
        return copy.deepcopy(self.values)

    def flat(self) -> dict[str, Any]:
        """`{"vae.beta": 1.0, ...}`: for MLflow params."""
        return flatten(self.values)


def dvc_profile_error(profile: str, overlay: dict) -> str:
    """Why a profile cannot run under DVC, and what to do instead.

    DVC records, and `dvc exp run -S` sets, params.yaml's own sections; a profile overrides
    them after DVC has read them. So under DVC (which sets $DVC_STAGE for every stage command)
    the parameters must be the sections themselves: the default profile, with nothing in
    `profiles.default`. Otherwise `-S tdm.tau_max=2` would run with the profile's value while
    DVC records 2, and DVC's matrices would train the top-level seeds the profile does not use."""
    keys = sorted(f"{section}.{key}" if isinstance(values, dict) else section
                  for section, values in overlay.items() for key in (values if isinstance(values, dict) else [None]))
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return (f"profile '{profile}' overrides params.yaml's sections ({shown}), and dvc records and sets the "
            f"sections, not what the profile makes of them: for dvc, set 'profile: default' (with an empty "
            f"profiles.default) and put the values in the sections, or run the profile with "
            f"`VISGOAL_PROFILE={profile} snakemake`")


def load_params(
    path: Path | None = None, profile: str | None = None, overrides: list[str] | tuple[str, ...] = (),
    env: str | None = None,
) -> Params:
    """Resolve params: file -> the environment's tuning (`params:` in envs/<env>.yaml beside the file) ->
    profile (arg, then $VISGOAL_PROFILE, then the file's key) -> overrides. What MLflow records and a
    checkpoint's fingerprint hashes is what the stage runs with, so another environment's tuning
    restarts nothing. Without `env`, no environment's tuning: what every stage shares."""
    path = path or project_root() / "params.yaml"
    raw = read_sections(path)
    if "env_overrides" in raw:
        raise ConfigError(f"{path}: env_overrides moved beside each environment: put env_overrides.<env> under "
                          f"`params:` in envs/<env>.yaml and remove the section")
    if found := retired_options(flatten(raw)):
        raise ConfigError(retired_error(str(path), found))
    if found := retired_options(flatten({".".join(keys): value for keys, value in map(parse_override, overrides)})):
        raise ConfigError(retired_error("--set", found))
    validate(raw, "params.schema.json", str(path))
    base = {k: v for k, v in raw.items() if k not in ("profile", "profiles")}
    profiles = raw.get("profiles") or {}
    for name, section in profiles.items():  # a typo in any profile fails, not only in the chosen one
        validate(deep_merge(base, section or {}), "params.schema.json", f"{path} (profiles.{name})")
    chosen = profile or os.environ.get(PROFILE_ENV_VAR) or raw["profile"]
    if chosen not in PROFILES:
        raise ConfigError(f"unknown profile '{chosen}' (choose one of: {', '.join(PROFILES)})")
    overlay = profiles.get(chosen) or {}
    if os.environ.get("DVC_STAGE") and overlay:
        raise ConfigError(dvc_profile_error(chosen, overlay))
    values = with_overrides(deep_merge(base, overlay), overrides)
    # a bad --set names itself, not the first environment whose overrides were merged over it
    validate(values, "params.schema.json", f"{path} (profile {chosen}, after --set)")
    check_env_tuning(values, path)
    tuning = env_tuning(path, env) if env else {}
    source = f"{path} (profile {chosen}{f', envs/{env}.yaml' if tuning else ''}, after --set)"
    if tuning:  # the profile (a scale) wins over an environment's tuning, --set over both
        values = with_overrides(deep_merge(deep_merge(base, tuning), overlay), overrides)
        validate(values, "params.schema.json", source)
    check_relabel(values, source)
    return Params(profile=chosen, values=values)


# What shapes the DAG itself (which jobs exist, which rule trains a method, whether its jobs ask for
# a GPU) is the same for every environment, so an environment cannot override it.
DAG_KEYS = ("profile", "profiles", "envs", "methods", "seeds", "device", "crl.representation")


def env_tuning(path: Path, env: str) -> dict:
    """An environment's own values over params.yaml's sections: `params:` in envs/<env>.yaml beside
    `path` (none where it has no such key, or no such file)."""
    spec = Path(path).parent / "envs" / f"{env}.yaml"
    raw = read_yaml(spec) if spec.is_file() else {}
    tuning = raw.get("params") if isinstance(raw, dict) else None
    if tuning is not None and not isinstance(tuning, dict):
        raise ConfigError(f"{spec}: key 'params': expected a mapping of params.yaml's sections, got {tuning!r}")
    return tuning or {}


def check_env_tuning(values: dict, path: Path) -> None:
    """Every environment's tuning (envs/*.yaml beside params.yaml, whichever stage runs) names only keys
    of params.yaml's sections, none of DAG_KEYS; the schema checks its values merged over the sections."""
    for spec in sorted((Path(path).parent / "envs").glob("*.yaml")):
        tuning = env_tuning(path, spec.stem)
        if found := retired_options(flatten(tuning)):
            raise ConfigError(retired_error(f"{spec} (params)", found))
        for key in DAG_KEYS:
            section, _, name = key.partition(".")
            if section in tuning and (not name or isinstance(tuning[section], dict) and name in tuning[section]):
                raise ConfigError(f"{spec}: key 'params.{key}': the same for every environment (it shapes the "
                                  f"pipeline's jobs); set it in params.yaml instead")
        if tuning:
            validate(deep_merge(values, tuning), "params.schema.json", f"{spec} (params)")


def check_relabel(values: dict, source: str) -> None:
    """Every relabelling mixture (`replay.relabel`, `rig.relabel`, `tdm.relabel`) sums to at most 1:
    what it leaves over keeps the transition's own goal. Checked here, naming its own key, before
    any stage starts (the schema bounds each weight, not their sum)."""
    for section, body in values.items():
        mixture = body.get("relabel") if isinstance(body, dict) else None
        if isinstance(mixture, dict) and sum(mixture.values()) > 1 + 1e-9:
            raise ConfigError(f"{source}: key '{section}.relabel': the weights sum to {sum(mixture.values()):g}, "
                              f"more than 1 ({mixture}); lower one of them")


@functools.lru_cache(maxsize=8)
def _file_sections(path: Path, mtime: float) -> dict:
    return read_sections(path)


class Section:
    """Attribute access to one params.yaml section (`section`, less `leave_out`): what an agent
    reads as `cfg.gamma`. Its keys and their defaults are params.yaml's own section (before any
    profile, environment or --set), so that a parameter has one place, params.yaml, and the code
    none: `TD3Config(gamma=0.9)` is params.yaml's td3 section with gamma 0.9."""

    section = ""
    leave_out: tuple[str, ...] = ()

    def __init__(self, **values: Any):
        defaults = self.defaults()
        if unknown := sorted(set(values) - set(defaults)):
            raise TypeError(f"{type(self).__name__}: no key {', '.join(unknown)} in params.yaml's '{self.section}'")
        self.__dict__.update({**copy.deepcopy(defaults), **values})

    @classmethod
    def defaults(cls) -> dict:
        path = project_root() / "params.yaml"
        sections = _file_sections(path, path.stat().st_mtime if path.is_file() else 0.0)
        return {k: v for k, v in sections[cls.section].items() if k not in cls.leave_out}

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.defaults())

    @classmethod
    def from_params(cls, section: dict) -> "Section":
        """From a resolved section (a stage's params), every key of the section's."""
        return cls(**{key: section[key] for key in cls.keys()})

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


def parameter_sources(path: Path | None = None, profile: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                      env: str | None = None) -> tuple[Params, dict[str, str]]:
    """The resolved params (as `load_params` gives them) and, for each flat key, where its value
    came from: `params.yaml`, `envs/<env>.yaml`, `profile <name>` or `--set`, the last that
    set it (a profile wins over an environment's tuning, --set over both)."""
    params = load_params(path, profile, overrides, env)
    raw = read_yaml(path or project_root() / "params.yaml")
    tuning = flatten(env_tuning(path or project_root() / "params.yaml", env) if env else {})
    overlay = flatten((raw.get("profiles") or {}).get(params.profile) or {})
    sets = [".".join(keys) for keys, _ in map(parse_override, overrides)]

    def source(key: str) -> str:
        def within(layer) -> bool:
            return any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in layer)

        if within(sets):
            return "--set"
        if within(overlay):
            return f"profile {params.profile}"
        if within(tuning):
            return f"envs/{env}.yaml"
        return "params.yaml"

    return params, {key: source(key) for key in params.flat()}
