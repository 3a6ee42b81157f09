"""Atomic outputs: a stage either finishes or leaves nothing behind; and weights files read back safely."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


class OutputError(ValueError):
    """An output that cannot be written: one line, with the fix."""


def check_writable(path: str | Path) -> Path:
    """Fail now, in one line, if `path` cannot be written, rather than after the work: a probe file
    (removed at once) in the nearest folder that exists; no folder is created."""
    path = Path(path)
    fix = "choose another --out, or make the folder writable"
    if path.is_dir():
        raise OutputError(f"{path}: a folder is in the way of this output file; {fix}")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{path}: cannot write it, {blocker} is a file, not a folder; {fix}")
    folder = next(p for p in path.absolute().parents if p.is_dir())
    try:
        with tempfile.NamedTemporaryFile(prefix=f".{path.name}.probe-", dir=folder):
            pass
    except OSError as err:
        raise OutputError(f"{path}: cannot write it ({err.strerror or err}); {fix}") from None
    return path


def remove_stale(path: Path) -> None:
    """Remove what killed writers of `path` left behind (`.<name>.tmp-<pid>-*` of a process that is
    gone), so that a rerun starts clean; a live writer's file stays."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.removeprefix(f".{path.name}.tmp-").split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    A killed process leaves at most a `.<name>.tmp-<pid>-*` file, never a file under the
    final name that looks complete; the next write of `path` removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would leave outputs unreadable to others
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def load_weights(path: str | Path, refusal: Exception, map_location: str = "cpu"):
    """`torch.load(path, weights_only=True)`: tensors and plain values, so that no file a stage reads
    can run code. A file that is not such a file raises `refusal` (one line, with the fix)."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise  # the file may well be ours: the CLI names it and the reason
    except Exception:
        # Bytes that are not a pickle send the weights-only unpickler wherever they lead (EOFError when
        # empty, IndexError, KeyError, UnicodeDecodeError, UnpicklingError); a truncated zip archive
        # raises OSError or RuntimeError. PyTorch's own message would advise weights_only=False: never,
        # for a file that is not ours.
        raise refusal from None
