"""A stage's work shared out between processes, one per core (`share_out`), and how a stage's
process stops when it is told to (`sigterm_unwinds`).

The dataset's frames and the evaluation protocol's episodes are independent of who makes them,
so a stage can deal them out in shares. The first share runs in this process; each other share
runs in a spawned process (a fresh interpreter, so its own GL context and torch threads), and
every item a share yields comes back here to `handle`, in the order it is made. The caller
writes, counts or keeps the items, so its output is the same file for any number of shares.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import signal
import time
from typing import Callable, Iterable, Iterator

_FINISHED = None  # what a worker sends after its share's last item; shares never yield None


class _Failed:
    """A worker's error, sent back to be raised in the parent."""

    def __init__(self, error: BaseException):
        self.error = error


def share_out(work: Callable[[list], Iterator], shares: list[list], handle: Callable[[object], None]) -> None:
    """`handle(item)` here for every item of every `work(share)`; `work` must pickle (a module-level
    function, or a functools.partial of one). A worker's error is raised here; an error here (or
    SIGTERM) stops the workers at once."""
    shares = [share for share in shares if share] or [[]]
    if len(shares) == 1:
        for item in work(shares[0]):
            handle(item)
        return
    context = multiprocessing.get_context("spawn")
    items = context.Queue()
    workers = [context.Process(target=_run, args=(work, share, items), daemon=True) for share in shares[1:]]
    for worker in workers:
        worker.start()
    running = len(workers)

    def receive(wait: float | None) -> None:
        nonlocal running
        while running:
            try:
                item = items.get(timeout=wait) if wait else items.get_nowait()
            except queue.Empty:
                return
            if item is _FINISHED:
                running -= 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                handle(item)

    try:
        for item in work(shares[0]):
            handle(item)
            receive(wait=None)
        while running:
            receive(wait=0.2)
            if running and any(worker.exitcode not in (None, 0) for worker in workers):
                died = next(worker for worker in workers if worker.exitcode not in (None, 0))
                raise RuntimeError(f"a worker process died (exit code {died.exitcode}) before its share was done")
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def _run(work: Callable[[list], Iterable], share: list, items) -> None:
    try:
        for item in work(share):
            items.put(item)
    except BaseException as error:  # noqa: BLE001 (sent to the parent, which raises it)
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 (an error that cannot travel: its type and message can)
            error = RuntimeError(f"{type(error).__name__}: {error}")
        items.put(_Failed(error))
    finally:
        items.put(_FINISHED)


def deal(items: list, n: int) -> list[list]:
    """`items` dealt out in turn into `n` shares (balanced when items differ in cost)."""
    return [items[k::n] for k in range(n)]


_OURS = os.path.dirname(__file__) + os.sep  # where visgoal's own code lies, as its frames name it
_LOOK_AGAIN = 0.01  # seconds
_PATIENCE = 2.0  # seconds


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (the MLflow run ends KILLED, temporary files are removed), from
    visgoal's own code only.

    Raised in a library's code, the exit can fall between a lock's release and its taking back (in
    `threading.Condition.wait`, which the wait for the update thread's Future runs): the unwinding
    then releases a lock it does not hold, and the run ends with "cannot release un-acquired lock"
    instead of SIGTERM's status. So a SIGTERM that lands in a library's frame waits, looking again
    every 10 ms (SIGALRM), until visgoal's code runs, which in a stage is a matter of milliseconds;
    after 2 s it unwinds wherever it is, so a stage stuck in a library still stops."""
    received: list[float] = []

    def unwind(signum, frame) -> None:
        if signum == signal.SIGTERM and not received:
            received.append(time.monotonic())
        if not received:  # an alarm that is not ours
            return
        if (frame is not None and not frame.f_code.co_filename.startswith(_OURS)
                and time.monotonic() - received[0] < _PATIENCE):
            signal.setitimer(signal.ITIMER_REAL, _LOOK_AGAIN)
            return
        raise SystemExit(128 + signal.SIGTERM)

    previous = {signum: signal.signal(signum, unwind) for signum in (signal.SIGTERM, signal.SIGALRM)}
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
