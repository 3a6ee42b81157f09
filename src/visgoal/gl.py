"""Choose the headless OpenGL backend before anything imports mujoco.

MuJoCo reads `MUJOCO_GL` once, when it is first imported. We default to EGL and
fall back to OSMesa; a machine with neither gets one line naming the packages.
"""

from __future__ import annotations

import ctypes.util
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
