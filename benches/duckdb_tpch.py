"""TPC-H in DuckDB, for `tpch bench`: loads the CSV files of `tpch gen` into
an in-memory database on one thread, runs each query file RUNS times and
prints one line per query: NAME SECONDS (the best run), and the load as
`load SECONDS` first.

Usage: python duckdb_tpch.py DATA_DIR SCHEMA_SQL RUNS QUERY.sql...
"""
import sys
import time

import duckdb


def main():
    data, schema, runs, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    con = duckdb.connect(":memory:")
    con.execute("SET threads = 1")
    con.execute(open(schema).read())
    start = time.perf_counter()
    for t in ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]:
        con.execute(f"COPY {t} FROM '{data}/{t}.csv' (FORMAT csv, HEADER true)")
    print(f"load {time.perf_counter() - start}", flush=True)
    for f in files:
        name = f.rsplit("/", 1)[-1].removesuffix(".sql")
        stmts = [s for s in open(f).read().split(";") if s.strip()]
        best = None
        for _ in range(runs):
            took = 0.0
            for s in stmts:
                start = time.perf_counter()
                r = con.execute(s)
                if r.description:
                    r.fetchall()
                took += time.perf_counter() - start
            best = took if best is None else min(best, took)
        print(f"{name} {best}", flush=True)


main()
