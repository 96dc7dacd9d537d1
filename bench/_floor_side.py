"""Side process of ``core.py``: the floor, one single-row INSERT per autocommit transaction.

Run by ``core.py`` with the ``.venv`` interpreter; see ``core.py`` for usage.
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.metadata import version

import psycopg
from _common import (
    WARMUP,
    base_meta,
    emit,
    ms,
    query_pg_settings,
    reset_database,
    summarize,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--inserts", type=int, default=5000)
    args = ap.parse_args()

    reset_database(args.db)
    with psycopg.connect(args.db, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor (id bigserial PRIMARY KEY, v integer NOT NULL)")
        settings = query_pg_settings(conn)
        # psycopg prepares a statement after 5 executions; warm that up too.
        for i in range(WARMUP * 10):
            conn.execute("INSERT INTO floor (v) VALUES (%s)", (i,))
            conn.execute("SELECT 1")

        insert_s: list[float] = []
        select_s: list[float] = []
        cpu_s: list[float] = []
        for i in range(args.inserts):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            conn.execute("INSERT INTO floor (v) VALUES (%s)", (i,))
            t1 = time.perf_counter()
            cpu_s.append(time.thread_time() - c0)
            insert_s.append(t1 - t0)
            # A read-only round trip (no WAL flush), interleaved, for comparison.
            t2 = time.perf_counter()
            conn.execute("SELECT 1")
            select_s.append(time.perf_counter() - t2)

    insert = summarize(insert_s)
    emit(
        {
            "meta": {**base_meta(), "psycopg": version("psycopg"), "pg_settings": settings},
            "insert": insert,
            "select_1": summarize(select_s),
            "per_insert_ms": insert["p50_ms"],
            "thread_cpu_ms_per_insert": ms(statistics.fmean(cpu_s)),
            "inserts_per_s": 1000.0 / insert["mean_ms"],
        }
    )


if __name__ == "__main__":
    main()
