"""share_out: a stage's work dealt out to processes, every item handled here."""

import os

import pytest

from visgoal.processes import deal, share_out


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
