"""The fork engine's choice of how many processes compute a step (issue 21), on made-up step timings."""

import pytest

from kerash.training.engines import fork
from kerash.training.engines.fork import LoadProbe, ProcessChooser


@pytest.fixture(autouse=True)
def adaptive(monkeypatch):
    monkeypatch.delenv("KERASH_ENGINE_ADAPT", raising=False)


def ticking(step=0.001):
    """A clock that advances `step` seconds at each reading (a step's time, roughly)."""
    now = [0.0]

    def clock():
        now[0] += step
        return now[0]

    return clock


def drive(chooser, seconds_of, steps, shards=4, idle=lambda step: True, start=0):
    """Run `steps` steps; seconds_of(woken, step) is a step's time.  The workers woken at each step."""
    woken = []
    for step in range(start, start + steps):
        w = chooser.choose(shards, idle(step))
        chooser.record(w, seconds_of(w, step), 100)
        woken.append(w)
    return woken


def test_the_faster_number_is_kept_and_warm_up_steps_do_not_decide():
    chooser = ProcessChooser(1, ticking())

    # two processes take 0.6 of one's time, but their first steps (pages faulted in after the fork) are slow
    def seconds(w, step):
        if w == 1 and step < ProcessChooser.WARM:
            return 3.0
        return 0.6 if w == 1 else 1.0

    woken = drive(chooser, seconds, 2000)
    assert woken[:ProcessChooser.WARM + ProcessChooser.TRY] == [1] * (ProcessChooser.WARM + ProcessChooser.TRY)
    assert woken.count(1) / len(woken) > 0.97  # the tries of one process grow rare while they change nothing
    assert chooser.current == 1


def test_one_process_is_kept_when_two_do_not_pay():
    chooser = ProcessChooser(1, ticking())
    woken = drive(chooser, lambda w, step: 1.0 if w == 0 else 1.05, 2000)
    assert woken[-1000:].count(0) / 1000 > 0.97
    assert chooser.current == 0


def test_the_first_try_waits_until_the_workers_have_run_a_while():
    """A VM's scheduler may keep new processes on one core at first: the first try is not judged on those steps."""
    chooser = ProcessChooser(1, ticking(0.01))  # 10 ms a step: WARM_SECONDS last 15 steps

    def seconds(w, step):
        if w == 1 and step < 15:
            return 1.0  # no faster than one process, at first
        return 0.6 if w == 1 else 1.0

    woken = drive(chooser, seconds, 400)
    assert woken[:15] == [1] * 15
    assert woken.count(1) / len(woken) > 0.95


def test_more_processes_must_be_clearly_faster():
    chooser = ProcessChooser(1, ticking())
    drive(chooser, lambda w, step: 1.0 if w == 0 else 0.95, 500)  # 5%: within MARGIN, noise on a busy machine
    assert chooser.current == 0


def test_a_change_of_load_is_noticed():
    """Two processes pay until another job takes a core: the probe says so, one process is tried again soon."""
    chooser = ProcessChooser(1, ticking())

    def seconds(w, step):
        if step < 1000:
            return 0.6 if w == 1 else 1.0
        return 1.8 if w == 1 else 1.0  # beside a busy process

    woken = drive(chooser, seconds, 1000, idle=lambda step: True)
    assert chooser.current == 1
    woken = drive(chooser, seconds, 200, idle=lambda step: False, start=1000)
    assert chooser.current == 0
    assert woken[-150:].count(0) == 150  # without an idle core, two processes are not tried again


def test_a_passing_slowdown_does_not_decide_for_long():
    """Two processes pay; a few of their steps are slow (the host took a core for a moment): the chooser may
    switch to one process, but tries two again soon and comes back."""
    chooser = ProcessChooser(1, ticking())

    def seconds(w, step):
        if w == 1 and 3000 <= step < 3010:
            return 5.0
        return 0.6 if w == 1 else 1.0

    woken = drive(chooser, seconds, 3400)
    assert woken[3100:].count(1) / 300 > 0.95


def test_a_single_shard_wakes_nobody_and_adapt_0_wakes_all(monkeypatch):
    assert ProcessChooser(3, ticking()).choose(1) == 0
    assert ProcessChooser(3, ticking()).choose(2) == 1  # at most one process per shard
    monkeypatch.setenv("KERASH_ENGINE_ADAPT", "0")
    chooser = ProcessChooser(3, ticking())
    assert drive(chooser, lambda w, step: 1.0 if w == 0 else 9.0, 200, shards=8) == [3] * 200


def test_more_workers_than_shards_still_adapt():
    """--workers 3 on batches of two shards: the first try (all workers) is cut to what the shards allow, and its
    steps count (they never did: the chooser stayed on its first try, without a timing)."""
    chooser = ProcessChooser(2, ticking())
    woken = drive(chooser, lambda w, step: 1.0 if w == 0 else 2.0, 1000, shards=2)
    assert max(woken) == 1
    assert chooser.cost[1] is not None and chooser.current == 0
    assert woken[-500:].count(0) / 500 > 0.97


def test_the_load_probe_judges_each_number_of_processes_on_the_same_readings(monkeypatch):
    monkeypatch.setattr(fork, "running_tasks", lambda: 2)  # this process and one other job, on 4 cores
    monkeypatch.setattr(fork, "_process_state", lambda pid: "sleeping")
    probe = LoadProbe(4, lambda: [4242])
    assert probe.idle_core(1)  # 1 other + 1 of ours < 4
    assert not probe.idle_core(3)  # 1 other + 3 of ours: no core to spare, though read a moment ago


def test_the_load_probe_does_not_count_this_runs_own_workers(monkeypatch):
    """Two processes of one run computing on a quiet 2-core machine are not a busy machine (they were read as one:
    no polling, and the chooser's tries of more processes were cut short)."""
    running = {"tasks": 2}
    monkeypatch.setattr(fork, "running_tasks", lambda: running["tasks"])
    monkeypatch.setattr(fork, "_process_state", lambda pid: "running")
    probe = LoadProbe(2, lambda: [4242])
    assert probe.idle_core(1)  # this process and its running worker: nobody else
    running["tasks"] = 3  # and a stranger
    for _ in range(LoadProbe.READINGS):
        probe.last = 0.0
        probe.idle_core(1)
    assert not probe.idle_core(1)
    monkeypatch.setattr(fork, "_process_state", lambda pid: "sleeping")
    running["tasks"] = 2  # this process and a stranger; the worker sleeps
    for _ in range(LoadProbe.READINGS):
        probe.last = 0.0
        probe.idle_core(1)
    assert not probe.idle_core(1)
