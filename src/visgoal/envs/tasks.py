"""Goal tasks: how each environment samples a goal, measures it, and is put into its goal state.

A task is one small class. To add an environment, write a task here (or reuse
one) and add `envs/<name>.yaml` naming it. A task never restores state: the
wrapper saves the full MuJoCo state before `apply_goal` and restores it after.
"""

from __future__ import annotations

from typing import Callable

import mujoco
import numpy as np

from visgoal.config import ConfigError


class GoalTask:
    """The goal-specific parts of an environment. `env` is the unwrapped gymnasium env."""

    unit = "m"  # of the true goal distance, as figures and tables label it

    def __init__(self, env, model: mujoco.MjModel, data: mujoco.MjData, **kwargs):
        self.env, self.model, self.data = env, model, data

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal vector from the environment's own goal distribution."""
        raise NotImplementedError

    def achieved_goal(self) -> np.ndarray:
        """Where the goal-relevant part of the scene is now."""
        raise NotImplementedError

    def state(self, obs) -> np.ndarray:
        """Proprioceptive state, for the state-based baseline only."""
        return np.asarray(obs["observation"] if isinstance(obs, dict) else obs, dtype=np.float32)

    def set_goal(self, goal: np.ndarray) -> None:
        """Tell the environment about the episode's goal (so its own reward and info agree)."""

    def apply_goal(self, goal: np.ndarray) -> None:
        """Put the simulator into a state that achieves `goal` (data is restored afterwards)."""
        raise NotImplementedError

    def fallen(self) -> bool:
        """A failure the agent can never leave (the env then ends the episode, `termination: absorbing`)."""
        return False


TASKS: dict[str, type[GoalTask]] = {}


def register(name: str) -> Callable[[type[GoalTask]], type[GoalTask]]:
    def add(cls: type[GoalTask]) -> type[GoalTask]:
        TASKS[name] = cls
        return cls

    return add


def _qpos_address(model: mujoco.MjModel, joint: str) -> int:
    return int(model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)])


@register("cart_position")
class CartPosition(GoalTask):
    """InvertedPendulum: goal = (cart position, pole angle 0): the pole upright at a target cart position."""

    unit = "m, rad"  # one norm over metres of cart and radians of pole

    def __init__(self, env, model, data, low: float = -0.8, high: float = 0.8):
        super().__init__(env, model, data)
        self.low, self.high = low, high

    def sample_goal(self, rng):
        return np.array([rng.uniform(self.low, self.high), 0.0])

    def achieved_goal(self):
        return self.data.qpos[:2].copy()

    def apply_goal(self, goal):
        self.data.qpos[:2] = goal
        self.data.qvel[:] = 0.0


@register("gripper_position")
class GripperPosition(GoalTask):
    """FetchReach: goal = gripper position; reached by driving the mocap to the goal."""

    def __init__(self, env, model, data, settle_steps: int = 200):
        super().__init__(env, model, data)
        self.settle_steps = settle_steps
        self.grip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "robot0:grip")

    def sample_goal(self, rng):
        return self.env._sample_goal().copy()  # uses the env's own np_random

    def achieved_goal(self):
        return self.data.site_xpos[self.grip].copy()

    def set_goal(self, goal):
        self.env.goal = goal.copy()

    def apply_goal(self, goal):
        # The arm follows the mocap body through a weld; step until the gripper is there.
        # After a reset the mocap is stale until the env's first step re-syncs it: sync it here too.
        self.env._utils.reset_mocap2body_xpos(self.model, self.data)
        self.data.mocap_pos[0] = goal + (self.data.mocap_pos[0] - self.data.site_xpos[self.grip])
        for _ in range(self.settle_steps):
            mujoco.mj_step(self.model, self.data)
            if np.linalg.norm(self.data.site_xpos[self.grip] - goal) < 1e-3:
                break


@register("maze_position")
class MazePosition(GoalTask):
    """PointMaze / AntMaze: goal = agent (x, y); the agent is placed in the goal cell, standing still.

    `max_tilt` (degrees, a free root joint only): the agent has fallen once its body's up axis is
    tilted further than this from the world's. AntMaze's `step` drops the Ant's own unhealthy end,
    so a flipped ant would otherwise lie on its back until the time limit.
    """

    def __init__(self, env, model, data, root_joint: str, max_tilt: float | None = None):
        super().__init__(env, model, data)
        self.address = _qpos_address(model, root_joint)
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, root_joint)
        if max_tilt is not None and model.jnt_type[joint] != mujoco.mjtJoint.mjJNT_FREE:
            raise ConfigError(f"task_kwargs.max_tilt needs a free root joint, and '{root_joint}' is not one; "
                              f"drop max_tilt or name the free joint")
        self.min_up = None if max_tilt is None else float(np.cos(np.radians(max_tilt)))
        self.rest_qpos = data.qpos.copy()  # the initial pose (the ant stands upright)

    def sample_goal(self, rng):
        return self.env.add_xy_position_noise(self.env.generate_target_goal()).copy()

    def achieved_goal(self):
        return self.data.qpos[self.address : self.address + 2].copy()

    def set_goal(self, goal):
        self.env.goal = goal.copy()
        self.env.update_target_site_pos()

    def apply_goal(self, goal):
        self.data.qpos[:] = self.rest_qpos
        self.data.qpos[self.address : self.address + 2] = goal
        self.data.qvel[:] = 0.0

    def up(self) -> float:
        """The world z component of the body's up axis: 1 upright, -1 on its back."""
        _, x, y, _ = self.data.qpos[self.address + 3 : self.address + 7]  # the free joint's quaternion (w, x, y, z)
        return float(1.0 - 2.0 * (x * x + y * y))

    def fallen(self):
        return self.min_up is not None and self.up() < self.min_up


@register("object_position")
class ObjectPosition(GoalTask):
    """AdroitHandRelocate: goal = ball position; the ball is put at the target (the hand stays)."""

    def __init__(self, env, model, data):
        super().__init__(env, model, data)
        self.object = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "Object")
        self.target = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "target")
        self.slide = [_qpos_address(model, j) for j in ("OBJTx", "OBJTy", "OBJTz")]
        self.hinge = [_qpos_address(model, j) for j in ("OBJRx", "OBJRy", "OBJRz")]

    def sample_goal(self, rng):
        # The env's reset_model distribution for the target site (relative to the table).
        # The env's own reset_model distribution for the target site (a child of the world body).
        return self.env.np_random.uniform(low=(-0.2, -0.2, 0.15), high=(0.2, 0.2, 0.35))

    def achieved_goal(self):
        return self.data.xpos[self.object].copy()

    def set_goal(self, goal):
        self.model.site_pos[self.target] = goal
        mujoco.mj_kinematics(self.model, self.data)

    def apply_goal(self, goal):
        # The object's slide joints are offsets from its body position.
        self.data.qpos[self.slide] = goal - self.model.body_pos[self.object]
        self.data.qpos[self.hinge] = 0.0
        self.data.qvel[:] = 0.0

    def state(self, obs):
        # The env's observation ends with object-target and palm-target vectors: goal information.
        return np.asarray(obs[:-6], dtype=np.float32)


@register("joint_angle")
class JointAngle(GoalTask):
    """FrankaKitchen: goal = an object joint's angle (the microwave door open)."""

    unit = "rad"

    def __init__(self, env, model, data, joint: str, goal: float):
        super().__init__(env, model, data)
        self.address = _qpos_address(model, joint)
        self.goal = float(goal)

    def sample_goal(self, rng):
        return np.array([self.goal])

    def achieved_goal(self):
        return self.data.qpos[self.address : self.address + 1].copy()

    def apply_goal(self, goal):
        self.data.qpos[self.address] = goal[0]
        self.data.qvel[:] = 0.0
