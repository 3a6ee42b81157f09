"""The agents: one file per method, one factory line each.

A method is a class that answers the agent interface (agents/base.py: what it sees, `build`,
`replay_options`, `exploration_goal`, `policy`, `explore`, `update`, `after_episode`, its
checkpoint state and its policy.pt). The Workspace (agents/workspace.py) runs every method
through that interface alone.
"""

from __future__ import annotations

from pathlib import Path

from visgoal.agents.base import Agent
from visgoal.agents.crl import CRLAgent
from visgoal.agents.gcbc import GCBCAgent
from visgoal.agents.rig import RIGAgent
from visgoal.agents.td3 import TD3Agent
from visgoal.agents.tdm import TDMAgent

AGENTS = {
    "td3": TD3Agent,
    "tdm": TDMAgent,
    "rig": RIGAgent,
    "crl": CRLAgent,
    "gcbc": GCBCAgent,
}

POLICY_FORMAT = "visgoal-policy/2"  # the `format` key of policy.pt's meta


def agent_class(method: str) -> type[Agent]:
    if method not in AGENTS:
        raise ValueError(f"unknown method '{method}' (choose {', '.join(AGENTS)})")
    return AGENTS[method]


def view_kind(method: str, params) -> str:
    """What a method's runs see with these parameters: "state", "latent" (they read the VAE and its
    dataset, and write the VAE they acted through) or "pixels" (images only, no VAE)."""
    return agent_class(method).view_kind(params)


def refuse_retired(path: Path, made_with: dict) -> None:
    """A policy.pt or checkpoint made with an option that is retired fails in one line naming the tag."""
    from visgoal.config import RETIRED_TAG, flatten, retired_options

    if found := retired_options(flatten(made_with), gone_keys=False):
        raise ValueError(f"{path}: made with {', '.join(found)}, a retired option (git tag {RETIRED_TAG} has it); "
                         f"evaluate it there, or retrain it with `python -m visgoal train`")


def load_policy(run_dir: Path, vae: Path | None = None, device: str = "cpu"):
    """(view, policy, meta) of a trained run's policy.pt: what evaluation acts with, on `device`
    whatever device trained it (policy.pt is read onto the CPU first). Image agents act through the
    run's own (fine-tuned) vae.pt unless `vae` names another."""
    from visgoal.agents.views import load_view
    from visgoal.files import load_weights
    from visgoal.paths import POLICY

    path = Path(run_dir) / POLICY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no policy; train it first (python -m visgoal train ...)")
    saved = load_weights(path, ValueError(f"{path}: not a visgoal policy (empty, truncated, or not a PyTorch "
                                          f"weights file); retrain it with `python -m visgoal train`"))
    meta = saved.get("meta", {}) if isinstance(saved, dict) else {}
    if meta.get("format") != POLICY_FORMAT:
        raise ValueError(f"{path}: not a {POLICY_FORMAT} policy (an older visgoal's, or not ours); "
                         f"retrain it with `python -m visgoal train`")
    refuse_retired(path, meta.get("params", {}))
    refuse_retired(path, {"image_agents": {"latent_velocity": meta["view"].get("latent_velocity")}, "tdm": meta.get("tdm", {})})
    return load_view(meta["view"], run_dir, vae, device), agent_class(meta["method"]).load_policy(saved, device), meta
