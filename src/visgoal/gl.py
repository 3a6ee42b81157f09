"""Choose the headless OpenGL backend before anything imports mujoco.

MuJoCo reads `MUJOCO_GL` once, when it is first imported. We default to EGL and
fall back to OSMesa; a machine with neither gets one line naming the packages.
"""

from __future__ import annotations

import ctypes.util
import logging
import os

MISSING_GL = (
    "no headless OpenGL found: install Debian's libegl1 and libgl1-mesa-dri (EGL) "
    "or libosmesa6 (OSMesa), e.g. `apt-get install -y libegl1 libgl1-mesa-dri libosmesa6`"
)

_LIBRARY = {"egl": "EGL", "osmesa": "OSMesa"}


# What MuJoCo accepts on Linux (its gl_context.py raises a traceback at import for anything else).
_ACCEPTED = ("egl", "osmesa", "glfw", "glx", "enable", "enabled", "on", "true", "1", "",
             "disable", "disabled", "off", "false", "0")


class GLUnavailable(RuntimeError):
    pass


def backend_problem() -> str | None:
    """One line if $MUJOCO_GL names no backend MuJoCo knows (it would fail at its import), else None."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen is None or chosen.lower().strip() in _ACCEPTED:
        return None
    return (f"MUJOCO_GL={chosen!r} is not an OpenGL backend: set it to egl or osmesa (headless), "
            f"glfw (a display), or unset it")


def select_backend() -> str | None:
    """Set MUJOCO_GL (and PYOPENGL_PLATFORM) if the user has not; return the backend.

    Returns None when neither library is installed: importing still works (the
    state-based baseline needs no images), and the first render raises GLUnavailable.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    for backend in ("egl", "osmesa"):
        if ctypes.util.find_library(_LIBRARY[backend]):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None


# What Mesa calls its software rasterisers: a container without the GPU's graphics driver renders
# with one of these, silently, however fast the GPU.
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "SwiftShader")


def renderer() -> str | None:
    """The renderer and vendor of the OpenGL context current in this process, e.g. "llvmpipe (LLVM
    15.0.6, 256 bits), Mesa/X.org"; None where no context is current or GL cannot be asked. Read
    through PyOpenGL, which MuJoCo's EGL and OSMesa backends use themselves."""
    try:
        from OpenGL import GL

        name, vendor = GL.glGetString(GL.GL_RENDERER), GL.glGetString(GL.GL_VENDOR)
    except Exception:  # noqa: BLE001 (no PyOpenGL, no GL library, a platform PyOpenGL cannot load)
        return None
    if not name:
        return None
    return f"{name.decode()}, {vendor.decode()}" if vendor else name.decode()


def log_renderer(device: str) -> str | None:
    """Log the current context's renderer (once per run: its caller's business), with a warning where
    a run on a GPU renders in software. Returns what it logged."""
    name = renderer()
    log = logging.getLogger("visgoal")
    log.info("OpenGL renderer: %s (MUJOCO_GL=%s)", name or "unknown", os.environ.get("MUJOCO_GL", "unset"))
    if name and device.startswith("cuda") and any(soft in name for soft in SOFTWARE_RENDERERS):
        log.warning("device %s, but MuJoCo renders in software (%s): the GPU's graphics driver is not visible "
                    "here (in a container: NVIDIA_DRIVER_CAPABILITIES=graphics,compute,utility)", device, name)
    return name
