"""Every environment: shapes, goal images, exact state restore, hidden goal markers, clear errors."""

from pathlib import Path

import mujoco
import numpy as np
import pytest

from conftest import ENVS
from visgoal.config import ConfigError
from visgoal.envs import available_envs, load_spec, make_env


def test_all_six_environments_have_specs():
    assert set(ENVS) <= set(available_envs())


@pytest.fixture(scope="module", params=ENVS)
def env(request):
    env = make_env(request.param, image_size=32)
    yield env
    env.close()


def test_reset_step_render_shapes(env):
    first = env.reset(seed=3)
    assert first.image.shape == (32, 32, 3) and first.image.dtype == np.uint8
    assert first.goal_image.shape == (32, 32, 3) and first.goal_image.dtype == np.uint8
    step = env.step(env.action_space.sample())
    assert step.image.shape == (32, 32, 3)
    assert step.state.ndim == 1 and step.achieved_goal.shape == step.desired_goal.shape
    assert step.distance == pytest.approx(np.linalg.norm(step.achieved_goal - step.desired_goal))
    assert step.success == (step.distance < env.spec.success_threshold)
    assert step.image.std() > 0, "the camera sees something, not a blank frame"


def test_goal_image_differs_from_observation(env):
    step = env.reset(seed=4)
    assert not step.success, "a goal reached at reset would make this check meaningless"
    assert np.abs(step.goal_image.astype(int) - step.image.astype(int)).sum() > 0


def test_goal_state_shows_the_goal(env):
    """In the goal state the true distance to the goal is within the success threshold."""
    env.reset(seed=5)
    saved = env.get_state()
    env.task.apply_goal(env.goal)
    mujoco.mj_forward(env.model, env.data)
    assert np.linalg.norm(env.task.achieved_goal() - env.goal) < env.spec.success_threshold
    env.set_state(saved)


def test_state_is_restored_exactly_after_goal_render(env):
    actions = [np.full(env.action_space.shape, v, dtype=env.action_space.dtype) for v in (0.3, -0.2, 0.5, 0.1)]

    def rollout(render_goal_midway: bool) -> np.ndarray:
        env.reset(seed=6)
        for action in actions[:3]:
            env.step(action)
        if render_goal_midway:
            before = env.get_state()
            env.render_goal(env.sample_goal())
            assert np.array_equal(env.get_state(), before)
        env.step(actions[3])
        return env.get_state()

    # ... and the future is unchanged: the same actions lead to the same state.
    assert np.array_equal(rollout(render_goal_midway=True), rollout(render_goal_midway=False))


def test_goal_markers_are_hidden(env):
    """Moving a hidden marker changes no pixel: the observation cannot leak the goal."""
    hidden = env.spec.hide.get("sites", [])
    if env.spec.name in ("fetch_reach", "point_maze", "ant_maze", "adroit_relocate"):
        assert hidden, f"{env.spec.name} draws a goal marker that must be hidden"
    first = env.reset(seed=7)
    if "track" in env.spec.camera:  # it shows what it follows and little else: a goal beside the ball
        env.reset(seed=7, goal=first.achieved_goal + 0.2)
    for name in hidden:
        site = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_SITE, name)
        assert env.model.site_rgba[site, 3] == 0
        image = env.render()
        original, size = env.model.site_pos[site].copy(), env.model.site_size[site].copy()
        env.model.site_size[site] = size * 3  # so the positive control shows at 32x32 too
        # Put the marker at the goal, where the env itself would draw it (site_pos is parent-relative).
        offset = env.data.site_xpos[site] - env.model.site_pos[site]
        target = env.data.site_xpos[site].copy()
        target[: min(3, env.goal.size)] = env.goal[:3]
        env.model.site_pos[site] = target - offset
        mujoco.mj_kinematics(env.model, env.data)
        moved = env.render()
        env.model.site_rgba[site, 3] = 1.0
        visible = env.render()
        env.model.site_rgba[site, 3] = 0.0
        env.model.site_pos[site], env.model.site_size[site] = original, size
        mujoco.mj_forward(env.model, env.data)
        assert np.array_equal(image, moved)
        assert not np.array_equal(moved, visible), "the marker is where the camera can see it"


def test_fetch_reach_draws_no_mocap_crosshair():
    """FetchReach's mocap target is three 2-m green bars through the commanded gripper position:
    hidden, the pictures change (a positive control) and the physics does not (no contacts)."""
    env = make_env("fetch_reach", image_size=64)
    mocap = env.model.body_mocapid[env.model.geom_bodyid] >= 0
    assert mocap.sum() == 4 and (env.model.geom_rgba[mocap, 3] == 0).all()
    assert not env.model.geom_contype[mocap].any() and not env.model.geom_conaffinity[mocap].any()
    env.reset(seed=3)
    env.step(np.zeros(4))  # the controller puts its target at the gripper, in view
    hidden = env.render()
    env.model.geom_rgba[mocap, 3] = 0.7
    shown = env.render()
    env.model.geom_rgba[mocap, 3] = 0.0
    assert not np.array_equal(hidden, shown), "the crosshair is not in view: the check shows nothing"
    env.close()


def test_restyled_sites_change_the_images_and_nothing_else():
    """point_maze draws its ball bigger and yellow: other pixels than the plain style, the same physics."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv

    spec = load_spec("point_maze")
    assert spec.restyle["sites"]["particle_site"]
    plain = ImageGoalEnv(dataclasses.replace(spec, restyle={}), image_size=32)
    styled = ImageGoalEnv(spec, image_size=32)
    site = mujoco.mj_name2id(styled.model, mujoco.mjtObj.mjOBJ_SITE, "particle_site")
    assert np.allclose(styled.model.site_rgba[site], spec.restyle["sites"]["particle_site"]["rgba"])
    a, b = plain.reset(seed=12), styled.reset(seed=12)
    assert not np.array_equal(a.image, b.image) and not np.array_equal(a.goal_image, b.goal_image)
    for action in np.random.default_rng(0).uniform(-1, 1, (20, 2)):
        a, b = plain.step(action), styled.step(action)
    assert np.array_equal(plain.get_state(), styled.get_state())
    plain.close(), styled.close()
    bad = dataclasses.replace(spec, restyle={"sites": {"no_such_site": {"size": [1, 1, 1]}}})
    with pytest.raises(ConfigError, match="restyle.sites names 'no_such_site'"):
        ImageGoalEnv(bad, image_size=32)


# point_maze's whole maze from above (its camera follows the ball): the view the pixel checks below
# count rows and columns in.
TOP_DOWN = {"lookat": [0.0, 0.0, 0.0], "distance": 4.2, "azimuth": 90.0, "elevation": -90.0}


def test_a_floor_coloured_by_position_changes_the_images_and_nothing_else():
    """restyle.floor paints point_maze's floor so that red grows along +x and green along +y,
    without a seam inside the extent; the physics is the same."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv

    spec = dataclasses.replace(load_spec("point_maze"), camera=TOP_DOWN)
    floor = spec.restyle["floor"]
    assert floor == {"geom": "ground", "extent": [-1.5, -1.5, 1.5, 1.5]}
    plain = ImageGoalEnv(dataclasses.replace(spec, restyle={"sites": spec.restyle["sites"]}), image_size=64)
    styled = ImageGoalEnv(spec, image_size=64)
    a, b = plain.reset(seed=3, goal=np.array([-1.0, -1.0])), styled.reset(seed=3, goal=np.array([-1.0, -1.0]))
    assert not np.array_equal(a.image, b.image)
    for action in np.random.default_rng(0).uniform(-1, 1, (20, 2)):
        plain.step(action), styled.step(action)
    assert np.array_equal(plain.get_state(), styled.get_state())
    # The goal's ball sits at (-1, -1): the top corridor (y = 1.2, image row 9) and the right one
    # (x = 1.2, column 54) are bare floor in the top-down view, 18.6 px per metre at 64x64.
    image = b.goal_image.astype(int)
    top = image[9, [8, 17, 27, 36, 45, 54], 0]            # x = -1.2 ... 1.2: red rises
    right = image[[54, 45, 36, 27, 18, 9], 54, 1]         # y = -1.2 ... 1.2: green rises
    assert (np.diff(top) > 3).all() and (np.diff(right) > 3).all(), (top, right)
    plain.close(), styled.close()
    for bad, message in (({"geom": "block_0_0", "extent": [-1, -1, 1, 1]}, "is not a plane"),
                         ({"geom": "ground", "extent": [1, -1, -1, 1]}, "xmax > xmin")):
        with pytest.raises(ConfigError, match=message):
            ImageGoalEnv(dataclasses.replace(spec, restyle={"floor": bad}), image_size=32)


def test_a_backdrop_coloured_by_position_is_drawn_and_changes_nothing_else():
    """restyle.backdrop draws a wall, red growing along x, into the pictures only: the model has
    no more geoms and the physics is the same. Behind the cart-pole, with a camera that follows the
    cart, the wall's colour says where the cart is."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv

    spec = load_spec("inverted_pendulum")
    wall = {"extent": [-2.5, -1.5, 2.5, 1.5], "y": 0.6, "tiles": [50, 1]}
    follow = {"track": "cart", "distance": 1.6, "azimuth": 90.0, "elevation": -5.0}
    plain = ImageGoalEnv(dataclasses.replace(spec, camera=follow, restyle={}), image_size=64)
    walled = ImageGoalEnv(dataclasses.replace(spec, camera=follow, restyle={"backdrop": wall}), image_size=64)
    assert walled.model.ngeom == plain.model.ngeom
    a, b = plain.reset(seed=4), walled.reset(seed=4)
    assert not np.array_equal(a.image, b.image) and not np.array_equal(a.goal_image, b.goal_image)
    for action in np.random.default_rng(0).uniform(-1, 1, (10, 1)):
        plain.step(action), walled.step(action)
    assert np.array_equal(plain.get_state(), walled.get_state())

    def picture(cart: float) -> np.ndarray:
        walled.data.qpos[:] = [cart, 0.0]
        mujoco.mj_forward(walled.model, walled.data)
        return walled.render().astype(int)

    # The top left corner is wall wherever the cart is: its red rises with the cart's x, and its
    # green stays (the wall's one row of tiles).
    corners = np.array([picture(x)[2:6, 2:6].mean(axis=(0, 1)) for x in (-0.8, -0.4, 0.0, 0.4, 0.8)])
    assert (np.diff(corners[:, 0]) > 3).all() and np.ptp(corners[:, 1]) < 2, corners
    plain.close(), walled.close()
    with pytest.raises(ConfigError, match="restyle.backdrop.extent must be"):
        ImageGoalEnv(dataclasses.replace(spec, restyle={"backdrop": {**wall, "extent": [1, 0, -1, 1]}}), image_size=32)


def test_a_backdrop_ramp_runs_between_its_two_colours():
    """restyle.backdrop.ramp replaces the red-along-x wall with a linear run between two colours:
    behind the cart-pole, the wall's corner goes from the first towards the second as the cart
    moves along x, every step of the cart changing both channels. A ramp that is not two RGB
    colours in [0, 1] is a one-line ConfigError."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv

    spec = load_spec("inverted_pendulum")
    wall = {"extent": [-1.8, -1.5, 1.8, 1.5], "y": 0.6, "tiles": [120, 1], "ramp": [[0.0, 0.2, 1.0], [1.0, 0.2, 0.0]]}
    follow = {"track": "cart", "distance": 1.6, "azimuth": 90.0, "elevation": -5.0}
    env = ImageGoalEnv(dataclasses.replace(spec, camera=follow, restyle={"backdrop": wall}), image_size=64)
    env.reset(seed=0)

    def corner(cart: float) -> np.ndarray:
        env.data.qpos[:] = [cart, 0.0]
        mujoco.mj_forward(env.model, env.data)
        return env.render().astype(int)[2:6, 2:6].mean(axis=(0, 1))

    corners = np.array([corner(x) for x in (-0.8, -0.4, 0.0, 0.4, 0.8)])
    assert (np.diff(corners[:, 0]) > 10).all() and (np.diff(corners[:, 2]) < -10).all(), corners
    assert np.ptp(corners[:, 1]) < 2, corners
    env.close()
    for bad in ([[0, 0, 1]], [[0, 0, 1], [1, 0, 2]], [[0, 0, 1], [1, 0]], [["red"], [0, 0, 1]]):
        with pytest.raises(ConfigError, match="restyle.backdrop.ramp must be"):
            ImageGoalEnv(dataclasses.replace(spec, restyle={"backdrop": {**wall, "ramp": bad}}), image_size=32)


def assert_bad_values_refused(root: Path, tmp_path: Path, env: str, key: str, bad_values) -> None:
    """envs/<env>.yaml with each of `bad_values` as its `key` is refused: a ConfigError naming the key."""
    (tmp_path / "envs").mkdir(exist_ok=True)
    text = "".join(line for line in (root / "envs" / f"{env}.yaml").read_text().splitlines(True)
                   if not line.startswith(f"{key}:"))
    for bad in bad_values:
        (tmp_path / "envs" / "bad.yaml").write_text(f"{text}\n{key}: {bad}\n")
        with pytest.raises(ConfigError, match=key):
            load_spec("bad", root=tmp_path)


def test_antialias_averages_a_larger_picture_and_moves_a_grid_edge_in_proportion(root, tmp_path):
    """`antialias.supersample` k renders k times larger and returns each k x k block's mean,
    rounded: the same picture as a renderer k times larger, averaged by hand. On the cart-pole
    from its goal image's state (the pole exactly upright, its edges on the pixel grid), the
    smoothed picture moves a little for a little tilt and more for more; the plain one jumps a
    whole column at the smallest tilt. A bad `antialias` is a one-line ConfigError."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv
    from visgoal.envs.render import FastRenderer

    spec = load_spec("inverted_pendulum")
    smooth = {"supersample": 2, "multisample": 0}
    small = ImageGoalEnv(dataclasses.replace(spec, antialias=smooth), image_size=32)
    small.reset(seed=3)
    large = FastRenderer(small.model, 64, 64, spec.camera, decor=small.renderer._decor)
    by_hand = large.render(small.data).reshape(32, 2, 32, 2, 3).astype(int).sum(axis=(1, 3))
    assert np.array_equal(small.render(), ((by_hand + 2) // 4).astype(np.uint8))
    large.close(), small.close()

    def tilt_costs(antialias: dict) -> list[float]:
        with ImageGoalEnv(dataclasses.replace(spec, antialias=antialias), image_size=64) as env:
            env.reset(seed=0)
            env.task.apply_goal(env.goal)
            upright = env.get_state()

            def picture(tilt: float) -> np.ndarray:
                env.set_state(upright)
                env.data.qpos[1] += tilt
                mujoco.mj_forward(env.model, env.data)
                return env.render().astype(float)

            goal = picture(0.0)
            return [float(np.linalg.norm(picture(t) - goal)) for t in (0.001, 0.005, 0.02, 0.1)]

    plain, smoothed = tilt_costs({}), tilt_costs({"supersample": 2, "multisample": 4})
    assert (np.diff(smoothed) > 0).all(), smoothed
    # Plainly, 0.005 rad (3 mm at the pole's tip, a fifth of a pixel) costs most of what 0.02 does;
    # smoothed, it costs a third of that, and under a third of the plain picture's
    assert plain[1] > 0.7 * plain[2] and smoothed[1] < 0.4 * smoothed[2], (plain, smoothed)
    assert smoothed[1] < 0.3 * plain[1], (plain, smoothed)
    assert_bad_values_refused(root, tmp_path, "inverted_pendulum", "antialias",
                              ("{supersample: 0}", "{multisample: 3}", "{blur: 1}"))


def test_render_detail_draws_fewer_triangles_and_leaves_the_simulation_alone(root, tmp_path):
    """The kitchen's `render_detail`: the GL context draws a copy whose big meshes have about
    `mesh_faces` faces and whose round shapes have fewer slices; the physics model keeps every
    mesh array, and the pictures differ from full detail only in a few pixels (the arm's shading),
    the same pictures each time. A bad `render_detail` is a one-line ConfigError."""
    from visgoal.envs.render import FastRenderer, drawn_model

    spec = load_spec("franka_kitchen")
    assert spec.render_detail["mesh_faces"] == 1000
    with make_env("franka_kitchen", image_size=64) as env:
        model = env.model
        assert drawn_model(model) is model
        before = {name: getattr(model, name).copy() for name in ("mesh_vert", "mesh_face", "mesh_normal", "mesh_facenum")}
        drawn = drawn_model(model, **spec.render_detail)
        big = model.mesh_facenum > 1000
        assert big.sum() >= 5 and model.mesh_facenum[big].sum() > 100_000
        assert (drawn.mesh_facenum[big] <= 1100).all() and (drawn.mesh_facenum[big] >= 500).all()
        assert np.array_equal(drawn.mesh_facenum[~big], model.mesh_facenum[~big])
        assert (drawn.vis.quality.numslices, model.vis.quality.numslices) == (16, 28)
        assert all(np.array_equal(getattr(model, name), value) for name, value in before.items())
        full = FastRenderer(model, 64, 64, spec.camera)
        differences = []
        for seed in range(3):
            env.reset(seed=seed)
            for _ in range(20):
                env.step(env.action_space.sample())
            picture = env.render()
            assert np.array_equal(picture, env.render())
            differences.append(np.abs(picture.astype(int) - full.render(env.data)).max(axis=-1))
        full.close()
    differences = np.stack(differences)
    assert differences.any()  # the detail is really dropped
    assert (differences > 8).mean() < 0.05 and differences.mean() < 3, (differences > 8).mean()
    assert_bad_values_refused(root, tmp_path, "franka_kitchen", "render_detail",
                              ("{mesh_faces: 2}", "{slices: 2}", "{triangles: 9}"))


def test_reset_is_deterministic_per_seed(env):
    a = env.reset(seed=11)
    b = env.reset(seed=11)
    assert np.array_equal(a.desired_goal, b.desired_goal)
    assert np.array_equal(a.goal_image, b.goal_image) and np.array_equal(a.image, b.image)


def test_unknown_environment_gets_a_clear_error():
    with pytest.raises(ConfigError, match="unknown environment 'fetch_rech'.*known: .*fetch_reach"):
        load_spec("fetch_rech")


def test_bad_spec_gets_a_clear_error(tmp_path, root):
    (tmp_path / "envs").mkdir()
    text = (root / "envs" / "fetch_reach.yaml").read_text().replace("episode_length", "episode_lenght")
    (tmp_path / "envs" / "typo.yaml").write_text(text)
    with pytest.raises(ConfigError, match="unknown key 'episode_lenght'"):
        load_spec("typo", root=tmp_path)
    (tmp_path / "envs" / "task.yaml").write_text(text.replace("episode_lenght", "episode_length")
                                                 .replace("gripper_position", "gripper_pos"))
    with pytest.raises(ConfigError, match="unknown task 'gripper_pos'"):
        load_spec("task", root=tmp_path)


def test_missing_gl_libraries_get_one_line_naming_the_packages(monkeypatch):
    from visgoal import gl

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(gl.ctypes.util, "find_library", lambda name: None)
    assert gl.select_backend() is None
    monkeypatch.setenv("MUJOCO_GL", "none")
    from visgoal.envs import render

    monkeypatch.setattr(render, "_context", None)
    with pytest.raises(gl.GLUnavailable, match="libegl1 and libgl1-mesa-dri.*libosmesa6"):
        render.gl_context()


def test_process_exits_cleanly_without_closing(root):
    """The GL context is freed once, at exit, with no errors from destructors."""
    import subprocess
    import sys

    code = ("from visgoal.envs import make_env\n"
            "a = make_env('point_maze', image_size=16); b = make_env('inverted_pendulum', image_size=16)\n"
            "a.reset(seed=0); b.reset(seed=0); print(a.render().shape, b.render().shape)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "(16, 16, 3) (16, 16, 3)" in result.stdout
    assert "Exception ignored" not in result.stderr and "Error" not in result.stderr, result.stderr


def test_camera_views_sit_side_by_side():
    """Two cameras: each view fills its half of the image, independently of the other."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv
    from visgoal.envs.render import FastRenderer

    spec = load_spec("fetch_reach")
    front = spec.camera[0]
    side = {**front, "azimuth": front["azimuth"] + 90.0}
    with ImageGoalEnv(dataclasses.replace(spec, camera=[front, side]), image_size=32) as env:
        env.reset(seed=5)
        both = FastRenderer(env.model, 32, 32, [front, side], detail=spec.render_detail).render(env.data)
        twice = FastRenderer(env.model, 32, 32, [front, front], detail=spec.render_detail).render(env.data)
        assert np.array_equal(env.render(), both)
    assert np.array_equal(both[:, :16], twice[:, :16]), "the left view is the front camera's alone"
    assert np.array_equal(twice[:, :16], twice[:, 16:]), "the same camera fills both halves alike"
    assert not np.array_equal(both[:, :16], both[:, 16:]), "the side camera sees something else"
    with pytest.raises(ValueError, match="width 33 does not split into 2 equal camera views"):
        FastRenderer(env.model, 33, 33, [front, side])


def test_a_camera_can_follow_a_body():
    """camera {track: <body>}: the view moves with the body, so the ball stays in the middle of
    the picture wherever it is (in the goal image too), and a floor coloured by position tells
    where it is; the physics is the same."""
    import dataclasses

    from visgoal.envs.core import ImageGoalEnv

    spec = load_spec("point_maze")
    follow = {"track": "particle", "distance": 1.5, "azimuth": 90.0, "elevation": -90.0}
    floor = {"geom": "ground", "extent": [-1.5, -1.5, 1.5, 1.5]}
    tracked = ImageGoalEnv(dataclasses.replace(spec, camera=follow, restyle={**spec.restyle, "floor": floor}),
                           image_size=64)
    fixed = ImageGoalEnv(dataclasses.replace(spec, camera=TOP_DOWN), image_size=64)
    goal = np.array([1.0, 1.0])
    first, _ = tracked.reset(seed=3, goal=goal), fixed.reset(seed=3, goal=goal)
    for _ in range(15):  # along the top corridor, from its left end (seed 3)
        moved, _ = tracked.step(np.array([1.0, 0.0])), fixed.step(np.array([1.0, 0.0]))
    assert np.array_equal(tracked.get_state(), fixed.get_state())

    def ball_centre(image):
        yellow = (image[..., 0] > 200) & (image[..., 1] > 180) & (image[..., 2] < 100)
        assert yellow.sum() > 20, "the ball is in the picture"
        return np.argwhere(yellow).mean(axis=0)

    for image in (first.image, moved.image, first.goal_image):
        assert np.abs(ball_centre(image) - 31.5).max() < 3, "the ball stays in the middle"
    assert np.linalg.norm(first.achieved_goal - moved.achieved_goal) > 0.2, "the ball has moved"
    assert not np.array_equal(first.image, moved.image), "so has the floor under it"
    # The same spot of the picture, floor up and left of the ball, has the colour of where the ball
    # is: red grows with x (-0.96, then -0.68, then the goal's 1.0), green with y (0.80, 0.80, 1.0).
    first_spot, moved_spot, goal_spot = (image[12, 12].astype(int) for image in (first.image, moved.image,
                                                                                    first.goal_image))
    assert first_spot[0] < moved_spot[0] < goal_spot[0] - 50, (first_spot, moved_spot, goal_spot)
    assert first_spot[1] == moved_spot[1] < goal_spot[1], (first_spot, moved_spot, goal_spot)
    tracked.close(), fixed.close()
    with pytest.raises(ValueError, match="camera track: body 'nope' is not in the model"):
        ImageGoalEnv(dataclasses.replace(spec, camera={**follow, "track": "nope"}), image_size=32)


def test_camera_list_is_validated(tmp_path, root):
    (tmp_path / "envs").mkdir()
    text = (root / "envs" / "inverted_pendulum.yaml").read_text()
    camera = next(line for line in text.splitlines() if line.startswith("camera:"))
    (tmp_path / "envs" / "empty.yaml").write_text(text.replace(camera, "camera: []"))
    with pytest.raises(ConfigError, match=r"key 'camera': expected one camera .*, got \[\]"):
        load_spec("empty", root=tmp_path)
    (tmp_path / "envs" / "bad.yaml").write_text(text.replace(camera, "camera: [{distance: 1.0}]"))
    with pytest.raises(ConfigError, match=r"key 'camera': expected one camera \(\{name\} .*, got \[\{'distance'"):
        load_spec("bad", root=tmp_path)


@pytest.mark.parametrize("name", ["point_maze", "ant_maze"])
def test_mazes_leave_no_generated_model_behind(name):
    with make_env(name, image_size=32) as env:
        generated = Path(env.unwrapped.tmp_xml_file_path)
        assert generated.suffix == ".xml"
        assert not generated.exists(), "the model is loaded; its temporary file is removed"
        env.reset(seed=1)
        env.step(env.action_space.sample())


def test_a_flipped_ant_ends_its_episode_as_a_fall():
    """ant_maze: a torso turned over by hand ends the episode (`termination: absorbing`); the same
    pose tilted 100 degrees, which ants under random actions came back from, does not; the upright
    ant at reset does not. The registered 700-step episode."""
    with make_env("ant_maze", image_size=32) as env:
        assert env.spec.termination == "absorbing" and env.spec.episode_length == 700
        root = env.task.address

        def turned(degrees: float) -> bool:
            env.reset(seed=5)
            half = np.radians(degrees) / 2  # a turn about the x axis
            env.data.qpos[root + 3 : root + 7] = [np.cos(half), np.sin(half), 0.0, 0.0]
            env.data.qpos[root + 2] = 0.75  # clear of the floor, so it lands tilted as set
            mujoco.mj_forward(env.model, env.data)
            return env.step(np.zeros(env.action_space.shape)).terminated

        assert turned(180.0) and turned(135.0)
        assert not turned(100.0) and not turned(0.0)
        step = env.reset(seed=5)
        for _ in range(5):
            step = env.step(np.zeros(env.action_space.shape))
        assert not step.terminated and env.task.up() > 0.9


def test_max_tilt_needs_a_free_joint(tmp_path):
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "envs").mkdir()
    text = (root / "envs" / "point_maze.yaml").read_text()
    kwargs = next(line for line in text.splitlines() if line.startswith("task_kwargs:"))
    (tmp_path / "envs" / "tilted.yaml").write_text(text.replace(kwargs, "task_kwargs: {root_joint: ball_x, max_tilt: 90}"))
    with pytest.raises(ConfigError, match="max_tilt needs a free root joint"):
        make_env("tilted", image_size=32, root=tmp_path)
