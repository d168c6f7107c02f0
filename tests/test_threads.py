"""The CLI's thread choice: a core another process keeps busy is not given a thread (one that shares its
core holds back every parallel region: ``qgesco demo`` 9x slower with two threads beside ``yes``)."""

from __future__ import annotations

from qgesco.runtime import threads


def stat(busy: int, idle: int) -> list[int]:
    return [busy, 0, 0, idle, 0, 0, 0]  # user nice system idle iowait irq softirq


def test_busy_cores_counts_the_cores_over_half_busy_in_the_mask():
    before = {"cpu0": stat(100, 100), "cpu1": stat(100, 100), "cpu2": stat(0, 0)}
    after = {"cpu0": stat(190, 110), "cpu1": stat(110, 190), "cpu2": stat(100, 0)}
    assert threads.busy_cores(before, after, [0, 1]) == 1  # cpu2 is outside the mask
    assert threads.busy_cores(before, after, [0, 1, 2]) == 2
    assert threads.busy_cores(before, before, [0, 1]) == 0  # no time passed: nothing known to be busy


def test_free_cores_leaves_at_least_one_and_overrides_win(monkeypatch):
    samples = iter([{"cpu0": stat(0, 0), "cpu1": stat(0, 0)}, {"cpu0": stat(100, 0), "cpu1": stat(100, 0)}])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.free_cores(0) == 1
    monkeypatch.setenv("QGESCO_THREADS", "3")
    assert threads.choose_threads() == 3 and threads.choose_threads(2) == 2
