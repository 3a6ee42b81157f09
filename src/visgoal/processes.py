"""A stage's work shared out between processes, one per core: `share_out`.

The dataset's frames and the evaluation protocol's episodes are independent of who makes them,
so a stage can deal them out in shares. The first share runs in this process; each other share
runs in a spawned process (a fresh interpreter, so its own GL context and torch threads), and
every item a share yields comes back here to `handle`, in the order it is made. The caller
writes, counts or keeps the items, so its output is the same file for any number of shares.
"""

from __future__ import annotations

import multiprocessing
import queue
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator

_FINISHED = None  # what a worker sends after its share's last item; shares never yield None
_items = None  # a worker process's queue back to the parent


def share_out(work: Callable[[list], Iterator], shares: list[list], handle: Callable[[object], None]) -> None:
    """`handle(item)` here for every item of every `work(share)`; `work` must pickle (a module-level
    function, or a functools.partial of one). A worker's error is raised here, once its share ends."""
    shares = [share for share in shares if share] or [[]]
    if len(shares) == 1:
        for item in work(shares[0]):
            handle(item)
        return
    context = multiprocessing.get_context("spawn")
    items = context.Queue()
    with ProcessPoolExecutor(len(shares) - 1, mp_context=context, initializer=_send_to, initargs=(items,)) as pool:
        others = [pool.submit(_run, work, share) for share in shares[1:]]
        running = len(others)

        def receive(wait: float | None) -> None:
            nonlocal running
            while running:
                try:
                    item = items.get(timeout=wait) if wait else items.get_nowait()
                except queue.Empty:
                    return
                if item is _FINISHED:
                    running -= 1
                else:
                    handle(item)

        for item in work(shares[0]):
            handle(item)
            receive(wait=None)
        while running:
            receive(wait=0.2)
            for future in others:  # a worker that died without finishing (killed, out of memory)
                if future.done() and future.exception() is not None and running:
                    raise future.exception()
        for future in others:
            future.result()  # a worker's own error, raised here


def _send_to(items) -> None:
    global _items
    _items = items


def _run(work: Callable[[list], Iterable], share: list) -> None:
    try:
        for item in work(share):
            _items.put(item)
    finally:
        _items.put(_FINISHED)


def deal(items: list, n: int) -> list[list]:
    """`items` dealt out in turn into `n` shares (balanced when items differ in cost)."""
    return [items[k::n] for k in range(n)]

