"""`python -m bench [name ...] [--quick]`: run the benchmarks (all by default), print a summary
table, write bench/results/<name>.json and bench/results/summary.json, and rewrite the committed
bench/RESULTS.md from that summary (not after `--quick`, whose figures mean nothing).

Missed targets and failed operations are reported (MISSED, FAILED), not fatal: the exit status
is non-zero only when a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from bench.common import PROJECT_DIR, RESULTS_DIR, Row, machine, write_result
from bench.report import RESULTS_MD, write_results_md

Rows = list[Row]


def _cold_start(quick: bool) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]:
    from bench import cold_start

    if quick:
        return cold_start.run(n=3, warmup=1, importtime_repeats=1), cold_start.summary_rows
    return cold_start.run(), cold_start.summary_rows


def _aws_calls(quick: bool) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]:
    from bench import aws_calls

    if quick:
        return aws_calls.run(runs=10, cycles=2), aws_calls.summary_rows
    return aws_calls.run(), aws_calls.summary_rows


def _orders(quick: bool) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]:
    from bench import orders

    if quick:
        return orders.run(runs=10, cycles=2), orders.summary_rows
    return orders.run(), orders.summary_rows


def _fulfilment(quick: bool) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]:
    from bench import fulfilment

    if quick:
        return fulfilment.run(n=3), fulfilment.summary_rows
    return fulfilment.run(), fulfilment.summary_rows


def _imports(quick: bool) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]:
    from bench import imports

    # BENCH_IMPORT_ROWS: the rows of the throughput file (default 20,000).
    rows = int(os.environ.get("BENCH_IMPORT_ROWS") or (1000 if quick else 20_000))
    if quick:
        return imports.run(rows=rows, memory_rows=(2000, 10_000)), imports.summary_rows
    return imports.run(rows=rows), imports.summary_rows


def _segmentation(quick: bool) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]:
    from bench import segmentation

    if quick:
        result = segmentation.run(
            customers=100_000, orders=1_000_000, runs=1, write_back_customers=10_000
        )
        return result, segmentation.summary_rows
    # BENCH_WRITE_BACK_CUSTOMERS: part B's size (default 100,000, as the issue asks: about
    # 12 minutes on the embedded endpoint, which writes some 170 profiles a second).
    customers = int(os.environ.get("BENCH_WRITE_BACK_CUSTOMERS") or 100_000)
    result = segmentation.run(write_back_customers=customers, write_back_asked=100_000)
    return result, segmentation.summary_rows


# In this order: cold_start spawns fresh interpreters before this process imports moto & co.
BENCHMARKS: dict[
    str, Callable[[bool], tuple[dict[str, Any], Callable[[Mapping[str, Any]], Rows]]]
] = {
    "cold_start": _cold_start,
    "aws_calls": _aws_calls,
    "orders": _orders,
    "fulfilment": _fulfilment,
    "imports": _imports,
    "segmentation": _segmentation,
}


def _table(rows: list[tuple[str, ...]]) -> str:
    headers = ("benchmark", "figure", "target", "verdict", "value")
    rows = [(b, f, t, v, value) for b, f, value, t, v in rows]  # the long column last
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _rows_of(name: str, result: Mapping[str, Any]) -> list[Row]:
    """The summary rows of a result kept from an earlier run (the module renders them)."""
    module = importlib.import_module(f"bench.{name}")
    rows: list[Row] = module.summary_rows(result)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few runs only: checks that the benchmarks work, figures are not meaningful "
        f"(and {RESULTS_MD.name} is not rewritten)",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    selected = args.names or list(BENCHMARKS)

    started = time.perf_counter()
    results: dict[str, Any] = {}
    rows: list[tuple[str, str, str, str, str]] = []
    failed: list[str] = []
    for name in selected:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            result, summarise = BENCHMARKS[name](args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            results[name] = {
                "name": name,
                "machine": machine(),
                "error": traceback.format_exc(),
                "quick": args.quick,
            }
            write_result(name, results[name])  # not an older success kept in its place
            rows.append((name, "ERROR", "benchmark could not run, see stderr", "", "FAILED"))
            continue
        print(
            f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True
        )
        # Marked in its own file too: a later run of another benchmark keeps it in the summary.
        result = {**result, "quick": args.quick}
        write_result(name, result)
        results[name] = result
        rows += [(name, *row) for row in summarise(result)]

    # Benchmarks not run this time keep their last figures in the summary, marked as such.
    for name in BENCHMARKS:
        previous = RESULTS_DIR / f"{name}.json"
        if name not in results and previous.exists():
            kept = json.loads(previous.read_text(encoding="utf-8"))
            results[name] = {**kept, "from_previous_run": True}
            try:
                kept_rows = _rows_of(name, kept) if "error" not in kept else []
            except Exception as exc:  # a result written by an older version of the benchmark
                kept_rows = [("(not rendered)", f"{type(exc).__name__}: {exc}", "", "")]
            rows += [(name, *row) for row in kept_rows]

    summary = {
        "machine": machine(),
        "quick": args.quick,
        "ran": selected,
        "seconds": round(time.perf_counter() - started, 1),
        "table": [
            {
                **dict(zip(("benchmark", "figure", "value", "target", "verdict"), r, strict=True)),
                "from_previous_run": bool(results[r[0]].get("from_previous_run")),
            }
            for r in rows
        ],
        "results": results,
    }
    path = write_result("summary", summary)
    print(_table([r for r in rows if r[0] in selected]))
    print(f"\nwrote {path.relative_to(PROJECT_DIR)} ({summary['seconds']} s)")
    if args.quick:
        print(f"QUICK: figures not meaningful; {RESULTS_MD.relative_to(PROJECT_DIR)} not rewritten")
    else:
        print(f"wrote {write_results_md(summary).relative_to(PROJECT_DIR)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
