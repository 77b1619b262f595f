"""twofold.demo.lanes on real worker processes: dependency order, results passed on, priorities, jobs
really side by side, threads per worker, worker output in the log, a failure stops everything."""

import os
import time

import pytest

from twofold.demo.lanes import Job, lanes_for, run_jobs

# Job functions: module level, so the spawned workers import them by name.


def interval(seconds: float, *inputs):
    """(start, end, inputs) of a job that works for `seconds`."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), inputs


def meet(me: str, other: str, folder: str, seconds: float, *inputs):
    """(start, end, inputs) of a job that marks its start, waits (up to a minute) for `other` to have
    started, then works for `seconds`: it ends only if both ran at the same time, however slowly a
    worker process starts."""
    start = time.time()
    open(os.path.join(folder, me), "w").close()
    deadline = start + 60
    while not os.path.exists(os.path.join(folder, other)):
        if time.time() > deadline:
            raise TimeoutError(f"{other} never ran beside {me}")
        time.sleep(0.01)
    time.sleep(seconds)
    return start, time.time(), inputs


def threads_and_pid(message: str):
    import torch

    print(message, flush=True)
    return torch.get_num_threads(), os.getpid()


def fail(seconds: float):
    time.sleep(seconds)
    raise OSError(28, "No space left on device", "somewhere")


STARTED_HERE: list[str] = []  # filled in the test's process: a forked worker would inherit it, a spawned one not


def parents_marks() -> int:
    return len(STARTED_HERE)


def long_job(pid_file: str):
    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(120)


def test_lanes_for_a_machine():
    assert lanes_for(1) == (1, 1)
    assert lanes_for(2) == (2, 1)
    assert lanes_for(5) == (2, 2)
    assert lanes_for(16) == (2, 8)


def test_jobs_wait_for_what_they_need_get_its_results_and_run_side_by_side(tmp_path):
    jobs = [Job("a", meet, ("a", "b", str(tmp_path), 0.6)), Job("b", meet, ("b", "a", str(tmp_path), 0.6)),
            Job("c", interval, (0.0,), needs=("b", "a")), Job("d", interval, (0.0,), after=("c",))]
    ended = []
    results = run_jobs(jobs, lanes=2, threads=1, log=tmp_path / "log",
                       done=lambda job, value, seconds: ended.append((job.name, seconds)))
    (a_start, a_end, _), (b_start, b_end, _) = results["a"], results["b"]
    assert a_start < b_end and b_start < a_end  # a and b overlapped (each waited for the other): two processes
    c_start, _, c_inputs = results["c"]
    assert c_start >= max(a_end, b_end) and c_inputs == (results["b"], results["a"])
    assert results["d"][0] >= results["c"][1] and results["d"][2] == ()  # `after`: order only
    assert [name for name, _ in ended][-2:] == ["c", "d"] and dict(ended)["a"] >= 0.6


def test_the_ready_job_of_highest_priority_starts_first(tmp_path):
    jobs = [Job(name, interval, (0.0,), priority=rank) for rank, name in enumerate(("low", "middle", "high"))]
    order = []
    run_jobs(jobs, lanes=1, threads=1, log=tmp_path / "log", done=lambda job, value, seconds: order.append(job.name))
    assert order == ["high", "middle", "low"]
    # a job that becomes ready later still goes before a waiting one of lower priority: nothing is queued
    # beyond the free lanes
    order.clear()
    jobs = [Job("first", interval, (0.5,), priority=3), Job("low", interval, (0.0,), priority=1),
            Job("next", interval, (0.0,), needs=("first",), priority=2)]
    run_jobs(jobs, lanes=1, threads=1, log=tmp_path / "log", done=lambda job, value, seconds: order.append(job.name))
    assert order == ["first", "next", "low"]


def test_a_lane_takes_the_next_job_as_soon_as_it_is_free_and_done_gets_each_result(tmp_path):
    results = {}
    jobs = [Job("short", interval, (0.2,)), Job("long", interval, (3.0,)),
            Job("then", interval, (0.0,), after=("short",))]
    got = run_jobs(jobs, lanes=2, threads=1, log=tmp_path / "log", every=10.0,
                   done=lambda job, value, seconds: results.setdefault(job.name, value))
    assert results == got
    assert got["then"][0] - got["short"][1] < 1.5  # not when the long job ends, nor at the next tick


def test_workers_are_spawned_fresh_not_forked_from_this_process(tmp_path):
    STARTED_HERE.append("a forked copy of this process would see this")
    try:
        assert run_jobs([Job("fresh", parents_marks)], lanes=1, threads=1, log=tmp_path / "log")["fresh"] == 0
    finally:
        STARTED_HERE.clear()


def test_workers_use_their_threads_and_write_to_the_log(tmp_path):
    results = run_jobs([Job("t", threads_and_pid, ("hello from a worker",))], lanes=1, threads=3,
                       log=tmp_path / "log")
    threads, pid = results["t"]
    assert threads == 3 and pid != os.getpid()  # 3: neither one nor this machine's default
    assert "hello from a worker" in (tmp_path / "log").read_text()


def test_progress_ticks_while_a_job_runs_and_each_job_is_timed(tmp_path):
    ticks, seconds = [], {}
    run_jobs([Job("a", interval, (1.0,)), Job("b", interval, (0.0,), needs=("a",))], lanes=1, threads=1,
             log=tmp_path / "log", done=lambda job, value, took: seconds.setdefault(job.name, took),
             tick=lambda: ticks.append(time.time()), every=0.1)
    assert len(ticks) >= 8  # about ten in the second job "a" works
    assert 1.0 <= seconds["a"] < 5.0 and seconds["b"] < 0.5  # the job's own time, not the run's


def test_a_failing_job_raises_here_and_stops_the_others_at_once(tmp_path):
    pid_file = tmp_path / "pid"
    started = time.time()
    with pytest.raises(OSError, match="No space left on device"):
        run_jobs([Job("long", long_job, (str(pid_file),), priority=1), Job("fails", fail, (2.0,))],
                 lanes=2, threads=1, log=tmp_path / "log")
    assert time.time() - started < 60  # not the 120 s of the long job
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the long job's worker is gone
        os.kill(pid, 0)


def test_unknown_or_circular_dependencies_and_twice_used_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        run_jobs([Job("a", interval, (0.0,)), Job("a", interval, (1.0,))], lanes=1, threads=1, log=tmp_path / "log")
    with pytest.raises(ValueError, match="unknown jobs"):
        run_jobs([Job("a", interval, (0.0,), after=("nope",))], lanes=1, threads=1, log=tmp_path / "log")
    with pytest.raises(ValueError, match="wait on each other"):
        run_jobs([Job("a", interval, (0.0,), after=("b",)), Job("b", interval, (0.0,), after=("a",))],
                 lanes=1, threads=1, log=tmp_path / "log")
