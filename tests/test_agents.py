"""The agent interface (agents/base.py): what a method must answer, and that a method with nothing
to learn runs through the one training loop and the evaluation protocol like any other."""

import csv

import numpy as np
import pytest
import torch

from visgoal import agents
from visgoal.agents.actor import actor_file, load_actor
from visgoal.agents.base import Agent
from visgoal.agents.networks import Actor
from visgoal.agents.policy import Policy
from visgoal.config import load_params


class StandStill(Agent):
    """A method with no training: it always acts 0, the middle of the action box."""

    name = "stand_still"

    def __init__(self, input_dim: int, low, high):
        self.actor = Actor(input_dim, len(low), [4], low, high, normalize=False)
        torch.nn.init.zeros_(self.actor.net[-1].weight), torch.nn.init.zeros_(self.actor.net[-1].bias)

    @classmethod
    def build(cls, params, view, action_low, action_high, rng):
        return cls(view.obs_dim + view.goal_dim, action_low, action_high)

    def policy(self, training: bool) -> Policy:
        return Policy(self.actor)

    def update(self, batch: dict) -> dict:
        raise AssertionError("a method that reads no batch is never updated")

    def policy_file(self) -> dict:
        return actor_file(self.actor, self.actor, [4], False)

    @classmethod
    def load_policy(cls, saved: dict, device: str = "cpu") -> Policy:
        return Policy(load_actor(saved, device))


def test_a_method_must_answer_what_acts():
    class Incomplete(Agent):
        @classmethod
        def build(cls, params, view, action_low, action_high, rng):
            return cls()

    with pytest.raises(TypeError, match="policy"):
        Incomplete.build(None, None, None, None, None)


def test_a_method_with_nothing_to_learn_trains_and_evaluates_through_the_loop(workdir, monkeypatch):
    """No batch is ever sampled nor an update made; the run still writes its policy and curve, and
    the protocol evaluates it."""
    from visgoal.stages import evaluate
    from visgoal.agents.workspace import train

    monkeypatch.setitem(agents.AGENTS, "stand_still", StandStill)
    params = load_params(profile="smoke", env="point_maze")
    run = workdir / "stand_still"
    train("point_maze", "stand_still", 0, run / "seed0", params, progress=False)
    with open(run / "seed0" / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["env_steps"]) == params["train"]["total_steps"]
    view, policy, meta = agents.load_policy(run / "seed0")
    assert meta["method"] == "stand_still" and view.kind == "state"
    np.testing.assert_array_equal(policy(np.zeros(4, np.float32), np.zeros(2, np.float32)), [0.0, 0.0])  # x, y, vx, vy
    evaluate("point_maze", "stand_still", workdir / "stand_still_eval.csv", params, seeds=[0], runs=run,
             progress=False)
    with open(workdir / "stand_still_eval.csv") as f:
        assert len(list(csv.DictReader(f))) == params["evaluate"]["episodes"]
