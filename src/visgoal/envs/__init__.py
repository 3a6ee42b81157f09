"""Six MuJoCo environments with image observations and goal images, rendered headless."""

from visgoal.gl import select_backend  # noqa: F401

select_backend()  # before gymnasium or mujoco are imported anywhere below

from visgoal.envs.core import EnvSpec, ImageGoalEnv, Step, available_envs, load_spec, make_env  # noqa: E402

__all__ = ["EnvSpec", "ImageGoalEnv", "Step", "available_envs", "load_spec", "make_env"]
