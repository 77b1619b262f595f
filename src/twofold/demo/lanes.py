"""A small graph of jobs run side by side on a few worker processes ("lanes"), in dependency order.

Models as small as the demo's use a second core poorly from inside one process (on 2 cores the
demo's pair trained in 530 s one member at a time with two threads, and in 334 s and 443 s of
single-thread work side by side; its fine-tunes took 273 s with two threads and 361 s of
single-thread work: docs/benchmarks.md), so work that does not depend on other work runs in
its own process with its share of the threads.
Workers are started once (spawned: a forked copy of a process that already ran PyTorch's
thread pool can hang) and take the ready job of highest priority whenever one is free, so
the longest chain of dependencies goes first.

A job's function must be importable by name (a module-level function); it receives its
`args` followed by the results of the jobs it `needs`. Worker output goes to `log`. If a job
fails, the other workers are stopped and its exception is raised here.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[..., Any]
    args: tuple = ()
    needs: tuple[str, ...] = ()  # jobs whose results are passed to `run` after `args`, in this order
    after: tuple[str, ...] = ()  # jobs that must finish first (results not passed)
    priority: int = 0  # among ready jobs, higher starts first


def lanes_for(threads: int) -> tuple[int, int]:
    """(lanes, threads per lane) for a machine with `threads` threads: two lanes (the pair's two
    chains of work) when there are two threads or more."""
    lanes = 2 if threads >= 2 else 1
    return lanes, max(1, threads // lanes)


def run_jobs(jobs: Sequence[Job], lanes: int, threads: int, log: Path,
             done: Callable[[Job, Any, float], None] = lambda job, value, seconds: None,
             tick: Callable[[], None] = lambda: None, every: float = 1.0) -> dict[str, Any]:
    """Run every job; return {name: result}. `done(job, result, seconds)` is called as each ends,
    `tick()` about every `every` seconds while jobs run (progress displays)."""
    waiting = {job.name: job for job in jobs}
    if len(waiting) < len(jobs):
        raise ValueError("job names must be unique")
    for job in jobs:
        unknown = [name for name in job.needs + job.after if name not in waiting]
        if unknown:
            raise ValueError(f"job {job.name} waits on unknown jobs {unknown}")
    results: dict[str, Any] = {}
    running: dict = {}
    pool = ProcessPoolExecutor(lanes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads, str(log)))
    try:
        while waiting or running:
            ready = sorted((job for job in waiting.values() if all(n in results for n in job.needs + job.after)),
                           key=lambda job: -job.priority)
            for job in ready[:lanes - len(running)]:
                del waiting[job.name]
                running[pool.submit(_timed, job.run, *job.args, *(results[n] for n in job.needs))] = job
            if not running:
                raise ValueError(f"jobs {sorted(waiting)} wait on each other")
            finished, _ = wait(running, timeout=every, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                results[job.name], seconds = future.result()  # a job's exception is raised here
                done(job, results[job.name], seconds)
            tick()
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    return results


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now: a failed or interrupted run must not wait for a long job to end."""
    for process in list((pool._processes or {}).values()):  # no public way before Python 3.14
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(threads: int, log: str) -> None:
    torch.set_num_threads(threads)
    handle = open(log, "a", buffering=1)  # noqa: SIM115 - the worker's output for its lifetime
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(handle.fileno(), stream.fileno())


def _timed(run: Callable[..., Any], *args) -> tuple[Any, float]:
    started = time.perf_counter()
    value = run(*args)
    return value, time.perf_counter() - started
