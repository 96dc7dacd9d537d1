"""Measurement helpers shared by the benchmark side processes (standard library only).

Each side process (``_floor_side.py``, ``_dbos_side.py``, ``_django_side.py``) runs under its
own interpreter, imports this module from its own directory, measures, and prints one line
``RESULT_MARKER + json`` on stdout, which ``core.py`` collects.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

RESULT_MARKER = "@@BENCH-RESULT@@ "

# Warm-up calls before timing (connection pools, prepared statements, code paths).
WARMUP = 20


class Handle(Protocol):
    """What both DBOS and django-dbos return from ``DBOS.start_workflow``."""

    def get_result(self) -> Any: ...


def ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, ``p`` in 0..100."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100.0 * len(ordered)) - 1))
    return ordered[k]


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Wall-clock samples in seconds -> summary in milliseconds."""
    return {
        "n": len(samples_s),
        "p50_ms": ms(statistics.median(samples_s)),
        "p90_ms": ms(percentile(samples_s, 90)),
        "p99_ms": ms(percentile(samples_s, 99)),
        "mean_ms": ms(statistics.fmean(samples_s)),
        "min_ms": ms(min(samples_s)),
    }


def admin_url(db_url: str) -> str:
    """The same server, but the ``postgres`` maintenance database."""
    parts = urlsplit(db_url)
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))


def database_name(db_url: str) -> str:
    name = urlsplit(db_url).path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"refusing to drop database {name!r}")
    return name


def reset_database(db_url: str) -> None:
    """DROP (forcing out any session) and CREATE the database of ``db_url``."""
    import psycopg  # both venvs have it; imported here to keep this module stdlib-only

    name = database_name(db_url)
    with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def measure_inline(workflow: Callable[[int], int], pairs: int, steps: int) -> dict[str, Any]:
    """Direct calls of ``workflow(0)`` and ``workflow(steps)``, interleaved.

    The order within each pair alternates, so drifts of a noisy machine hit both equally. The
    per-step overhead is ``(p50(steps) - p50(0)) / steps``. Direct calls run on the calling
    thread, so ``time.thread_time`` measures their client-side CPU; process CPU adds whatever
    background threads did meanwhile.
    """
    for _ in range(WARMUP):
        workflow(0)
        workflow(steps)
    wall: dict[int, list[float]] = {0: [], steps: []}
    cpu: dict[int, list[float]] = {0: [], steps: []}
    proc0 = time.process_time()
    for i in range(pairs):
        for n in (0, steps) if i % 2 == 0 else (steps, 0):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            result = workflow(n)
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.thread_time() - c0)
            if result != n * (n - 1) // 2:
                raise AssertionError(f"workflow({n}) returned {result!r}")
    proc_cpu = time.process_time() - proc0
    zero, many = summarize(wall[0]), summarize(wall[steps])
    cpu0, cpu_n = ms(statistics.fmean(cpu[0])), ms(statistics.fmean(cpu[steps]))
    return {
        "pairs": pairs,
        "steps": steps,
        "wf_0": zero,
        f"wf_{steps}": many,
        "per_step_ms": (many["p50_ms"] - zero["p50_ms"]) / steps,
        "thread_cpu_ms_wf_0": cpu0,
        f"thread_cpu_ms_wf_{steps}": cpu_n,
        "thread_cpu_ms_per_step": (cpu_n - cpu0) / steps,
        "process_cpu_ms_per_pair": ms(proc_cpu / pairs),
    }


def measure_start(
    start: Callable[[int], Handle], count: int, steps: int, warmup: int = WARMUP
) -> dict[str, Any]:
    """``count`` starts of a ``steps``-step workflow from this thread, then wait for all."""
    for _ in range(warmup):
        start(steps).get_result()
    proc0 = time.process_time()
    t0 = time.perf_counter()
    handles = [start(steps) for _ in range(count)]
    t_submitted = time.perf_counter()
    results = [h.get_result() for h in handles]
    elapsed = time.perf_counter() - t0
    proc_cpu = time.process_time() - proc0
    expected = steps * (steps - 1) // 2
    if any(r != expected for r in results):
        raise AssertionError("a started workflow returned a wrong result")
    return {
        "count": count,
        "steps": steps,
        "elapsed_s": elapsed,
        "submit_s": t_submitted - t0,
        "wf_per_s": count / elapsed,
        "submit_per_s": count / (t_submitted - t0),
        "process_cpu_ms_per_wf": ms(proc_cpu / count),
    }


def base_meta() -> dict[str, Any]:
    return {"python": platform.python_version(), "executable": sys.executable}


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
