"""The loop watchdog: a loop that keeps beating runs on; one that stops beating exits."""

from __future__ import annotations

import threading

import pytest

from observability.watchdog import STALLED_EXIT_CODE, LoopWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_beating_loop_is_left_alone_and_a_silent_one_exits_with_its_code():
    clock = Clock()
    exited: list[int] = []
    fired = threading.Event()

    def exit_(code: int) -> None:
        exited.append(code)
        fired.set()

    dog = LoopWatchdog("test-loop", 0.4, exit=exit_, clock=clock)
    dog.start()
    for _ in range(10):  # the loop beats while its clock runs past the bound many times over
        clock.now += 0.3
        dog.beat()
        assert not fired.wait(0.15)
    clock.now += 0.5  # then silence longer than the bound
    assert fired.wait(10), "the watchdog never fired"
    assert exited == [STALLED_EXIT_CODE]


def test_a_stopped_watchdog_never_fires():
    clock = Clock()
    exited: list[int] = []
    dog = LoopWatchdog("test-loop", 0.2, exit=exited.append, clock=clock)
    thread = dog.start()
    dog.stop()
    thread.join(5)
    clock.now += 100
    assert not thread.is_alive() and exited == []


def test_the_bound_must_be_positive():
    with pytest.raises(ValueError):
        LoopWatchdog("test-loop", 0)
