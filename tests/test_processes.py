"""share_out: a stage's work dealt out to processes, every item handled here; and SIGTERM's unwinding."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from visgoal.processes import deal, share_out, sigterm_unwinds


def squares(share):
    """Work for a share: its items' squares, with the process that made each."""
    for n in share:
        if n < 0:
            raise ValueError(f"negative item {n}")
        yield n, n * n, os.getpid()


def test_every_item_comes_back_once_and_other_processes_do_their_shares():
    handled = []
    share_out(squares, deal(list(range(10)), 3), handled.append)
    assert sorted((n, sq) for n, sq, _ in handled) == [(n, n * n) for n in range(10)]
    pids = {n: pid for n, _, pid in handled}
    assert pids[0] == os.getpid() and pids[1] != os.getpid() and pids[2] not in (os.getpid(), pids[1])
    assert {pids[n] for n in (0, 3, 6, 9)} == {os.getpid()}, "the first share runs here"


def test_a_workers_error_is_raised_here():
    with pytest.raises(ValueError, match="negative item -1"):
        share_out(squares, [[0, 1], [2, -1]], lambda item: None)


def test_shares():
    assert deal(list(range(5)), 2) == [[0, 2, 4], [1, 3]]
    assert deal([1], 3) == [[1], [], []]


def sigterm_in(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def test_sigterm_in_a_librarys_wait_unwinds_once_visgoals_code_runs():
    """The update thread's Future: SIGTERM during its wait does not unwind inside the lock's code."""
    waited = []
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(SystemExit) as stopped:
            with sigterm_unwinds():
                future = pool.submit(time.sleep, 0.5)
                sigterm_in(0.1)
                waited.append(future.result())
                while True:
                    deal([1], 1)  # visgoal's code: the unwinding starts here
    assert waited == [None], "unwound inside the Future's wait"
    assert stopped.value.code == 128 + signal.SIGTERM


def test_sigterm_stuck_in_a_library_unwinds_after_two_seconds():
    start = time.monotonic()
    with pytest.raises(SystemExit):
        with sigterm_unwinds():
            sigterm_in(0.1)
            threading.Event().wait(20)
    assert 2.0 <= time.monotonic() - start < 10


def test_sigterms_handler_is_given_back():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)
    with sigterm_unwinds():
        assert signal.getsignal(signal.SIGTERM) not in before
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)) == before
