"""Fast offscreen rendering: one GL context per process, features we do not need turned off.

Gymnasium's renderer draws shadows, reflections, the skybox and a multisampled
buffer. At 64x64 none of that is visible, and on a software rasteriser it costs
many times the frame (docs/experiments/2026-11-20-render-speed.md). We render with MuJoCo's own low-level
API instead, sharing a single GL context between every model in the process and
freeing it once, at exit, in the right order (mujoco.Renderer's `__del__` raises
EGL errors when the interpreter tears the context down first).
"""

from __future__ import annotations

import atexit
import copy
import os
import weakref

from visgoal.gl import MISSING_GL, GLUnavailable, select_backend

select_backend()

import mujoco  # noqa: E402  (must follow select_backend)
import numpy as np  # noqa: E402

# A context of this size serves every renderer in the process (paper profile: 128x128).
_MAX_SIDE = 1024
_UPRIGHT = np.eye(3).ravel()  # decor boxes are not rotated
_context: "mujoco.GLContext | None" = None
_live: "weakref.WeakSet[FastRenderer]" = weakref.WeakSet()


def gl_context() -> "mujoco.GLContext":
    """The process's single GL context, made current."""
    global _context
    if _context is None:
        if _backend() not in ("egl", "osmesa", "glfw"):
            raise GLUnavailable(MISSING_GL)
        try:
            _context = mujoco.GLContext(_MAX_SIDE, _MAX_SIDE)
        except Exception as err:  # the backend library is there but cannot make a context
            raise GLUnavailable(f"{MISSING_GL} (MUJOCO_GL={_backend()}: {err})") from None
        atexit.register(_shutdown)
    _context.make_current()
    return _context


def _backend() -> str:
    return os.environ.get("MUJOCO_GL", "none")


def _shutdown() -> None:
    """Free every renderer, then the context: at exit, before the GL library unloads."""
    global _context
    for renderer in list(_live):
        renderer.close()
    if _context is not None:
        try:
            _context.free()
        finally:
            _context = None


def lean_scene_flags(scene: "mujoco.MjvScene") -> None:
    """Turn off what costs time and is invisible at low resolution."""
    for flag in (
        mujoco.mjtRndFlag.mjRND_SHADOW,
        mujoco.mjtRndFlag.mjRND_REFLECTION,
        mujoco.mjtRndFlag.mjRND_SKYBOX,
        mujoco.mjtRndFlag.mjRND_FOG,
        mujoco.mjtRndFlag.mjRND_HAZE,
    ):
        scene.flags[flag] = False


class FastRenderer:
    """Renders one model's data to an RGB uint8 array from fixed cameras.

    `camera` is one camera spec, or a list of them: the views then sit side by
    side, each `height` tall and `width / len(camera)` wide (a second view shows
    what the first sees only as depth).
    """

    def __init__(self, model: "mujoco.MjModel", width: int, height: int, camera: "dict | list[dict]",
                 decor: "list[tuple[np.ndarray, np.ndarray, np.ndarray]]" = (), supersample: int = 1,
                 multisample: int = 0, detail: dict | None = None):
        """`decor`: boxes (half-sizes, centre, rgba) drawn into every picture, which the model does
        not hold (a backdrop: `backdrop_tiles`). They glow a little and have no highlight, so
        that their colour shows as it is under any light.

        `supersample` k > 1 renders k times larger and averages each k x k block, and
        `multisample` is the GL buffer's samples per pixel (0: none). Without them an edge that
        lies on the pixel grid, like the cart-pole's pole exactly upright in every goal image,
        jumps a whole pixel column at the smallest tilt (`antialias` in envs/<name>.yaml;
        docs/experiments/2026-12-06-pendulum-antialias.md).

        `detail` ({mesh_faces, slices, stacks}: `render_detail` in envs/<name>.yaml) draws meshes
        and round shapes with fewer triangles (`drawn_model`); the simulation keeps its own."""
        if supersample < 1 or multisample < 0:
            raise ValueError(f"supersample must be >= 1 and multisample >= 0, got {supersample} and {multisample}")
        if max(width, height) * supersample > _MAX_SIDE:
            raise ValueError(f"image size {width}x{height} rendered {supersample}x larger exceeds the {_MAX_SIDE} pixel limit")
        cameras = camera if isinstance(camera, list) else [camera]
        if width % len(cameras):
            raise ValueError(
                f"image width {width} does not split into {len(cameras)} equal camera views; "
                f"use an image size that is a multiple of {len(cameras)}"
            )
        self.width, self.height, self.supersample = width, height, supersample
        width, height = width * supersample, height * supersample  # what GL draws
        gl_context()
        # Multisampling only if asked, and an offscreen buffer big enough for the image.
        model.vis.quality.offsamples = multisample
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self._model = model
        self._scene = mujoco.MjvScene(model, maxgeom=10_000 + len(decor))
        self._decor = list(decor)
        lean_scene_flags(self._scene)
        self._option = mujoco.MjvOption()
        self._cameras = [make_camera(model, spec) for spec in cameras]
        view = width // len(cameras)
        self._views = [mujoco.MjrRect(i * view, 0, view, height) for i in range(len(cameras))]
        drawn = drawn_model(model, **(detail or {}))
        self._mjr = mujoco.MjrContext(drawn, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr)
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.empty((height, width, 3), dtype=np.uint8)
        _live.add(self)

    def render(self, data: "mujoco.MjData") -> np.ndarray:
        if self._mjr is None:
            raise RuntimeError("renderer is closed")
        gl_context()
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr)
        for camera, view in zip(self._cameras, self._views):
            mujoco.mjv_updateScene(
                self._model, data, self._option, None, camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
            )
            self._add_decor()
            mujoco.mjr_render(view, self._scene, self._mjr)
        mujoco.mjr_readPixels(self._pixels, None, self._viewport, self._mjr)
        pixels = np.flipud(self._pixels)  # OpenGL's origin is bottom-left
        k = self.supersample
        if k == 1:
            return pixels.copy()
        blocks = pixels.reshape(self.height, k, self.width, k, 3).sum(axis=(1, 3), dtype=np.uint32)
        return ((blocks + k * k // 2) // (k * k)).astype(np.uint8)  # each block's mean, rounded

    def _add_decor(self) -> None:
        scene = self._scene
        if scene.ngeom + len(self._decor) > scene.maxgeom:
            raise RuntimeError(f"the scene holds {scene.maxgeom} geoms, too few for the model's and {len(self._decor)} more")
        for half, centre, rgba in self._decor:
            geom = scene.geoms[scene.ngeom]
            mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_BOX, half, centre, _UPRIGHT, rgba)
            geom.specular, geom.emission = 0.0, 0.6  # its own colour, not the light's highlight
            scene.ngeom += 1

    def close(self) -> None:
        if self._mjr is not None and _context is not None:
            _context.make_current()
            self._mjr.free()
        self._mjr = None
        _live.discard(self)


def drawn_model(model: "mujoco.MjModel", mesh_faces: int | None = None, slices: int | None = None,
                stacks: int | None = None) -> "mujoco.MjModel":
    """The model the GL context draws: `model` itself, or a copy with fewer triangles.

    Scenes are still made from `model` (the copy shares its geoms, bodies and mesh ids); only the
    shapes uploaded to GL change. A mesh of more than `mesh_faces` faces is simplified to about that
    many (quadric decimation); spheres, capsules and cylinders are cut into `slices` around and
    `stacks` along (MuJoCo's quality.numslices and numstacks). A mesh is drawn from its own slices
    of the model's vertex, normal and face arrays, so a smaller mesh fits where the one it replaces
    was; its normals are the simplified surface's own (area-weighted, smooth)."""
    if mesh_faces is None and slices is None and stacks is None:
        return model
    drawn = copy.deepcopy(model)
    if slices is not None:
        drawn.vis.quality.numslices = slices
    if stacks is not None:
        drawn.vis.quality.numstacks = stacks
    if mesh_faces is not None:
        _simplify_meshes(drawn, mesh_faces)
    return drawn


def _simplify_meshes(drawn: "mujoco.MjModel", max_faces: int) -> None:
    import fast_simplification

    for mesh in np.flatnonzero(drawn.mesh_facenum > max_faces):
        if drawn.mesh_texcoordnum[mesh]:
            continue  # a textured mesh: drawn as it is
        vert, face = drawn.mesh_vertadr[mesh], drawn.mesh_faceadr[mesh]
        nvert, nface = drawn.mesh_vertnum[mesh], drawn.mesh_facenum[mesh]
        points = drawn.mesh_vert[vert : vert + nvert].astype(np.float64)
        faces = drawn.mesh_face[face : face + nface]
        points, faces = fast_simplification.simplify(points, faces, target_reduction=1.0 - max_faces / nface)
        normal = drawn.mesh_normaladr[mesh]
        if len(points) > drawn.mesh_normalnum[mesh]:
            continue  # fewer normals than the simplified mesh's points: drawn as it is
        drawn.mesh_vert[vert : vert + len(points)] = points
        drawn.mesh_normal[normal : normal + len(points)] = _vertex_normals(points, faces)
        drawn.mesh_face[face : face + len(faces)] = faces
        drawn.mesh_facenormal[face : face + len(faces)] = faces
        drawn.mesh_vertnum[mesh], drawn.mesh_normalnum[mesh], drawn.mesh_facenum[mesh] = len(points), len(points), len(faces)


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals at the points: the sum of their faces' normals, each weighted by its area."""
    corners = points[faces]
    area_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(points)
    for k in range(3):
        np.add.at(normals, faces[:, k], area_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def make_camera(model: "mujoco.MjModel", spec: dict) -> "mujoco.MjvCamera":
    camera = mujoco.MjvCamera()
    if "name" in spec:
        camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        camera.fixedcamid = _named(model, mujoco.mjtObj.mjOBJ_CAMERA, model.ncam, spec["name"], "camera", "cameras")
        return camera
    if "track" in spec:  # a free camera that follows the body's subtree: the agent stays in the picture
        camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        camera.trackbodyid = _named(model, mujoco.mjtObj.mjOBJ_BODY, model.nbody, spec["track"], "camera track: body",
                                    "bodies")
    else:
        camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        camera.lookat[:] = spec["lookat"]
    camera.distance = spec["distance"]
    camera.azimuth = spec["azimuth"]
    camera.elevation = spec["elevation"]
    return camera


def _named(model: "mujoco.MjModel", kind, count: int, name: str, what: str, plural: str) -> int:
    """The model's index of the `kind` object `name`, else one line listing the names it has."""
    index = mujoco.mj_name2id(model, kind, name)
    if index < 0:
        names = [mujoco.mj_id2name(model, kind, i) or "" for i in range(count)]
        raise ValueError(f"{what} '{name}' is not in the model ({plural}: {', '.join(names) or 'none'})")
    return index
