"""Image-goal environments: an RGB observation, a goal image, and the true goal distance.

`ImageGoalEnv` wraps a gymnasium MuJoCo environment. Image agents see only
`Step.image` and `Step.goal_image`; the state and goal vectors are there for the
state-based baseline and for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visgoal.config import ConfigError, project_root, read_yaml, validate
from visgoal.envs.render import FastRenderer
from visgoal.paths import available_envs

import contextlib  # noqa: E402
import io  # noqa: E402

import gymnasium as gym  # noqa: E402  (after the GL backend is chosen)
import mujoco  # noqa: E402

# gymnasium-robotics prints a notice about the Adroit *Dense* variants (not used here) on import.
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics  # noqa: E402

from visgoal.envs.tasks import TASKS  # noqa: E402

gym.register_envs(gymnasium_robotics)

# MuJoCo state that fully determines what happens next (positions, velocities,
# mocap, controls, applied forces and the solver's warm start).
FULL_STATE = mujoco.mjtState.mjSTATE_INTEGRATION


@dataclass(frozen=True)
class EnvSpec:
    """One `envs/<name>.yaml`, validated."""

    name: str
    gym_id: str
    task: str
    episode_length: int
    success_threshold: float
    camera: dict | list
    image_size: int | None = None
    make_kwargs: dict = field(default_factory=dict)
    task_kwargs: dict = field(default_factory=dict)
    hide: dict = field(default_factory=dict)
    restyle: dict = field(default_factory=dict)
    antialias: dict = field(default_factory=dict)  # {supersample, multisample}: FastRenderer's
    render_detail: dict = field(default_factory=dict)  # {mesh_faces, slices, stacks}: FastRenderer's detail
    termination: str = "cut"  # or "absorbing": see env.schema.json
    oracle_reward: str = "goal"  # or "env": see env.schema.json
    params: dict = field(default_factory=dict)  # the environment's tuning: config.load_params reads it
    description: str = ""

    @property
    def distance_unit(self) -> str:
        """The unit of the true goal distance: metres, radians (a joint), or both (the cart-pole)."""
        return TASKS[self.task].unit


def floor_colour(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of the floor at normalized position (a, b) in [0, 1]^2: red grows along x,
    green along y, both dark enough that a bright agent stands out on every tile."""
    return np.stack([0.1 + 0.45 * a, 0.1 + 0.45 * b, np.full_like(a, 0.35)], axis=-1)


def backdrop_tiles(backdrop: dict, env: str = "") -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`restyle.backdrop` as flat boxes (half-sizes, centre, rgba), a wall in the x-z plane at
    y = `y` whose tile at normalized position (a, b) of `extent` = [xmin, zmin, xmax, zmax] has
    `floor_colour(a, b)`: red grows along x, green along z. With `ramp` = [rgb at xmin, rgb at xmax]
    the colour runs linearly between those two instead, along x only: a steeper ramp in more
    channels makes a small move of the agent a larger change of every pixel of the wall.
    The renderer draws them into each picture; the model never holds them, so nothing touches them
    and nothing else changes."""
    xmin, zmin, xmax, zmax = map(float, backdrop["extent"])
    if not (xmax > xmin and zmax > zmin):
        raise ConfigError(f"envs/{env}.yaml: restyle.backdrop.extent must be [xmin, zmin, xmax, zmax] with "
                          f"xmax > xmin and zmax > zmin, got {list(backdrop['extent'])}")
    if "ramp" in backdrop:
        try:
            ramp = np.asarray(backdrop["ramp"], dtype=float)
        except (TypeError, ValueError):  # ragged or not numbers: the same one-line error below
            ramp = np.empty(0)
        if ramp.shape != (2, 3) or not ((ramp >= 0) & (ramp <= 1)).all():
            raise ConfigError(f"envs/{env}.yaml: restyle.backdrop.ramp must be [[r, g, b], [r, g, b]] in [0, 1] "
                              f"(the colours at xmin and xmax), got {backdrop['ramp']}")

        def colour(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return ramp[0] + (ramp[1] - ramp[0]) * a
    else:
        colour = floor_colour
    nx, nz = backdrop["tiles"]
    width, height = (xmax - xmin) / nx, (zmax - zmin) / nz
    # Each tile 2% wider and taller than its slot: where two tiles only met, a pixel could fall
    # between them and show the dark behind, a speck that came and went as the camera moved.
    half = np.array([width / 2 * 1.02, 0.005, height / 2 * 1.02])
    tiles = []
    for i in range(nx):
        for j in range(nz):
            a, b = (i + 0.5) / nx, (j + 0.5) / nz
            centre = np.array([xmin + (i + 0.5) * width, backdrop["y"], zmin + (j + 0.5) * height])
            rgba = np.append(colour(np.array(a), np.array(b)), 1.0).astype(np.float32)
            tiles.append((half, centre, rgba))
    return tiles


def paint_floor(model, geom: int, extent, env: str = "") -> None:
    """Repaint a plane's texture so that each point of `extent` = [xmin, ymin, xmax, ymax] (metres)
    shows a colour of its own (`floor_colour`), as OGBench colours its pixel mazes' floors: a 64x64
    picture then shows where the agent is, not only that it is somewhere in a corridor.

    The plane keeps its texture, repeated every 1.5 extents: a texel shows the one point of
    [xmin - width / 4, xmax + width / 4) it covers, so the colours run without a seam across the
    extent (outside it they are clamped).
    Must run before the renderer's context is made (which uploads the textures)."""
    if model.geom_type[geom] != mujoco.mjtGeom.mjGEOM_PLANE or model.geom_matid[geom] < 0:
        raise ConfigError(f"envs/{env}.yaml: restyle.floor.geom '{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, geom)}' "
                          f"is not a plane with a material; name the floor plane")
    material = model.geom_matid[geom]
    texture = model.mat_texid[material, mujoco.mjtTextureRole.mjTEXROLE_RGB]
    if texture < 0 or model.tex_type[texture] != mujoco.mjtTexture.mjTEXTURE_2D:
        raise ConfigError(f"envs/{env}.yaml: restyle.floor.geom '{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, geom)}' "
                          f"has no 2D texture to paint; name a textured floor plane")
    xmin, ymin, xmax, ymax = map(float, extent)
    if not (xmax > xmin and ymax > ymin):
        raise ConfigError(f"envs/{env}.yaml: restyle.floor.extent must be [xmin, ymin, xmax, ymax] with "
                          f"xmax > xmin and ymax > ymin, got {list(extent)}")
    period = 1.5 * np.array([xmax - xmin, ymax - ymin])
    half = model.geom_size[geom, :2]  # a plane's texture spans 2 * half / texrepeat metres per repeat
    model.mat_texuniform[material] = 0
    model.mat_texrepeat[material] = 2 * half / period
    width, height, channels = model.tex_width[texture], model.tex_height[texture], model.tex_nchannel[texture]
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    # A repeat is centred on the plane's centre (the floor is not rotated); columns run along +x,
    # rows along -y (measured by rendering a ramp).
    # The seam where a repeat wraps lies a sixth of a period outside the extent on each side.
    x0, y0 = xmin - period[0] / 6, ymin - period[1] / 6
    x = x0 + np.mod(model.geom_pos[geom, 0] + (u - 0.5) * period[0] - x0, period[0])
    y = y0 + np.mod(model.geom_pos[geom, 1] + (0.5 - v) * period[1] - y0, period[1])
    a = np.clip((x - xmin) / (xmax - xmin), 0, 1)[None, :]
    b = np.clip((y - ymin) / (ymax - ymin), 0, 1)[:, None]
    rgb = floor_colour(np.broadcast_to(a, (height, width)), np.broadcast_to(b, (height, width)))
    pixels = np.round(rgb * 255).astype(np.uint8)
    if channels == 4:
        pixels = np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=-1)
    start = model.tex_adr[texture]
    model.tex_data[start:start + width * height * channels] = pixels.reshape(-1)


def load_spec(name: str, root: Path | None = None) -> EnvSpec:
    root = root or project_root()
    path = root / "envs" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_envs(root)) or "none found"
        raise ConfigError(f"unknown environment '{name}' (known: {known}); add envs/{name}.yaml to define it")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys")
    validate(raw, "env.schema.json", str(path))
    if raw["task"] not in TASKS:
        raise ConfigError(f"{path}: unknown task '{raw['task']}' (known: {', '.join(sorted(TASKS))})")
    return EnvSpec(name=name, **raw)


@dataclass
class Step:
    image: np.ndarray  # uint8 HxWx3, or None when images are off
    goal_image: np.ndarray
    state: np.ndarray
    achieved_goal: np.ndarray
    desired_goal: np.ndarray
    distance: float
    success: bool
    reward: float  # the environment's own reward (the td3 baseline uses it on inverted_pendulum)
    terminated: bool = False
    truncated: bool = False


def find_simulation(env) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """The MjModel/MjData an env renders: its own, or its inner robot's (mazes, kitchen)."""
    for holder in (env, *vars(env).values()):
        model, data = getattr(holder, "model", None), getattr(holder, "data", None)
        if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData):
            return model, data
    raise TypeError(f"{type(env).__name__} holds no MuJoCo model")


class ImageGoalEnv:
    """A goal-conditioned environment that renders observation and goal images.

    reset(seed) samples a goal from the environment's own distribution (or takes
    `goal=`), renders the goal image by putting the simulator in the goal state and
    restoring it exactly, and returns the first Step. Episodes end after
    `spec.episode_length` steps.
    """

    def __init__(self, spec: EnvSpec, image_size: int = 64, render_images: bool = True):
        self.spec = spec
        self.image_size = spec.image_size or image_size
        self.render_images = render_images
        self._env = gym.make(spec.gym_id, max_episode_steps=spec.episode_length, **spec.make_kwargs)
        self.unwrapped = self._env.unwrapped
        self.model, self.data = find_simulation(self.unwrapped)
        # The mazes write their generated model to a temporary file and never delete it.
        generated = getattr(self.unwrapped, "tmp_xml_file_path", None)
        if generated:
            Path(generated).unlink(missing_ok=True)
        self._hide_markers()
        self._restyle_sites()
        self.task = TASKS[spec.task](self.unwrapped, self.model, self.data, **spec.task_kwargs)
        backdrop = backdrop_tiles(spec.restyle["backdrop"], spec.name) if "backdrop" in spec.restyle else []
        self.renderer = (FastRenderer(self.model, self.image_size, self.image_size, spec.camera, decor=backdrop,
                                      detail=spec.render_detail, **spec.antialias)
                         if render_images else None)
        self.action_space = self._env.action_space
        self.rng = np.random.default_rng()
        self.goal: np.ndarray | None = None
        self.goal_image: np.ndarray | None = None
        self._t = 0
        self._saved = np.empty(mujoco.mj_stateSize(self.model, FULL_STATE))

    def _index(self, kind: str, name: str, option: str) -> int:
        """The model's index of site or geom `name`, which the spec's `option` names."""
        obj = mujoco.mjtObj.mjOBJ_SITE if kind == "sites" else mujoco.mjtObj.mjOBJ_GEOM
        index = mujoco.mj_name2id(self.model, obj, name)
        if index < 0:
            raise ConfigError(f"envs/{self.spec.name}.yaml: {option}.{kind} names '{name}', which the model lacks")
        return index

    def _hide_markers(self) -> None:
        if self.spec.hide.get("mocap"):  # unnamed marker geoms of mocap bodies (fetch's green target crosshair)
            mocap = self.model.body_mocapid[self.model.geom_bodyid] >= 0
            self.model.geom_rgba[mocap, 3] = 0.0
        for kind, names in self.spec.hide.items():
            if kind == "mocap":
                continue
            rgba = self.model.site_rgba if kind == "sites" else self.model.geom_rgba
            for name in names:
                rgba[self._index(kind, name, "hide"), 3] = 0.0

    def _restyle_sites(self) -> None:
        """Draw sites in another colour or size, and colour a floor by position. Sites and textures
        have no physics: only the images change."""
        for name, style in self.spec.restyle.get("sites", {}).items():
            index = self._index("sites", name, "restyle")
            if "rgba" in style:
                self.model.site_rgba[index] = style["rgba"]
            if "size" in style:
                self.model.site_size[index] = style["size"]
        if "floor" in self.spec.restyle:
            floor = self.spec.restyle["floor"]
            paint_floor(self.model, self._index("geoms", floor["geom"], "restyle"), floor["extent"], self.spec.name)

    # --- the simulator state ------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        state = np.empty(mujoco.mj_stateSize(self.model, FULL_STATE))
        mujoco.mj_getState(self.model, self.data, state, FULL_STATE)
        return state

    def set_state(self, state: np.ndarray) -> None:
        mujoco.mj_setState(self.model, self.data, state, FULL_STATE)
        mujoco.mj_forward(self.model, self.data)

    # --- images -------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        if self.renderer is None:
            raise RuntimeError("this env was made with render_images=False")
        return self.renderer.render(self.data)

    def render_goal(self, goal: np.ndarray | None = None) -> np.ndarray:
        """Render the scene in the goal state, then restore the exact previous state."""
        goal = self.goal if goal is None else np.asarray(goal, dtype=np.float64)
        mujoco.mj_getState(self.model, self.data, self._saved, FULL_STATE)
        try:
            self.task.apply_goal(goal)
            mujoco.mj_forward(self.model, self.data)
            return self.render()
        finally:
            self.set_state(self._saved)

    # --- the episode --------------------------------------------------------------------
    def sample_goal(self) -> np.ndarray:
        return np.asarray(self.task.sample_goal(self.rng), dtype=np.float64)

    def reset(self, seed: int | None = None, goal: np.ndarray | None = None) -> Step:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            self._env.action_space.seed(seed)
        obs, _ = self._env.reset(seed=seed)
        self.goal = self.sample_goal() if goal is None else np.asarray(goal, dtype=np.float64)
        self.task.set_goal(self.goal)
        self.goal_image = self.render_goal() if self.render_images else None
        self._t = 0
        return self._step_record(obs, reward=0.0)

    def step(self, action: np.ndarray) -> Step:
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, terminated, _, _ = self._env.step(action)
        self._t += 1
        return self._step_record(
            obs, float(reward), terminated=bool(terminated) or self.task.fallen(),
            truncated=self._t >= self.spec.episode_length
        )

    def _step_record(self, obs, reward: float, terminated: bool = False, truncated: bool = False) -> Step:
        achieved = self.task.achieved_goal()
        distance = float(np.linalg.norm(achieved - self.goal))
        return Step(
            image=self.render() if self.render_images else None,
            goal_image=self.goal_image,
            state=self.task.state(obs),
            achieved_goal=achieved,
            desired_goal=self.goal.copy(),
            distance=distance,
            success=distance < self.spec.success_threshold,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
        )

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self._env.close()

    def __enter__(self) -> "ImageGoalEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_env(name: str, image_size: int = 64, render_images: bool = True, root: Path | None = None) -> ImageGoalEnv:
    return ImageGoalEnv(load_spec(name, root), image_size=image_size, render_images=render_images)
