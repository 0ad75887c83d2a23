"""The scaling curve's report (bench/scale_bench.py): the two tables, ratios against each table's
first cell, and the row checks, as the Markdown of bench/results/scale-latest.md."""

from __future__ import annotations

from typing import Any


def _ok(cell: dict[str, Any]) -> str:
    check = cell["check"]
    if check["ok"]:
        return f"OK ({check['rows']:,} rows)"
    return (
        f"**FAIL**: {check['rows']:,} rows, {check['distinct_event_ids']:,} distinct events, "
        f"{check['distinct_pixels']:,} pixels for {check['expected']:,} expected"
    )


def _per_process(cpu: dict[str, Any]) -> str:
    parts = cpu["per_process_cpu_s"]
    return f"{cpu['cpu_s_per_1k']:.3f}" + (f" ({' + '.join(f'{p:.1f}' for p in parts)} s)" if len(parts) > 1 else "")


def pixel_rows(cells: list[dict[str, Any]]) -> list[str]:
    base = next((c["rps"] for c in cells if "rps" in c), None)
    rows = [
        "| API processes | Redis | loads/s | ratio | p50 ms | p99 ms | errors | API CPU s/1k (per process) "
        "| Redis CPU s/1k | wrk CPU s/1k | cores busy (machine) | 0 lost, 0 duplicated |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        if "na" in c:
            rows.append(f"| {c['api_processes']} | {c['redis']} | n/a ({c['na']}) | | | | | | | | | |")
            continue
        ratio = f"{c['rps'] / base:.2f}x" if base else ""
        redis = f"{c['redis']} ({c['stream_partitions']} partition{'s' if c['stream_partitions'] > 1 else ''})"
        rows.append(
            f"| {c['api_processes']} | {redis} | {c['rps']:,.0f} | {ratio} | {c['p50_ms']} | {c['p99_ms']} "
            f"| {c['non_2xx'] + c['socket_errors']} | {_per_process(c['api'])} | {c['redis_cpu']['cpu_s_per_1k']:.3f} "
            f"| {c['wrk_cpu_s_per_1k']:.3f} | {c['cores_busy']} ({c['machine_cores_busy']}) | {_ok(c)} |"
        )
    return rows


def worker_rows(cells: list[dict[str, Any]]) -> list[str]:
    base = next((c["openings_per_s"] for c in cells if "openings_per_s" in c), None)
    rows = [
        "| worker processes | partitions | each consumes | openings/s | ratio | seconds | worker CPU s/1k (per process) "
        "| Redis CPU s/1k | mariadbd CPU s/1k | cores busy (machine) | 0 lost, 0 duplicated |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        if "na" in c:
            rows.append(f"| {c['processes']} | {c['partitions']} | | n/a ({c['na']}) | | | | | | | |")
            continue
        ratio = f"{c['openings_per_s'] / base:.2f}x" if base else ""
        rows.append(
            f"| {c['processes']} | {c['partitions']} | {', '.join(c['partitions_per_process'])} "
            f"| {c['openings_per_s']:,} | {ratio} | {c['seconds']} | {_per_process(c['worker'])} "
            f"| {c['redis_cpu']['cpu_s_per_1k']:.3f} | {c['mariadbd_cpu']['cpu_s_per_1k']:.3f} "
            f"| {c['cores_busy']} ({c['machine_cores_busy']}) | {_ok(c)} |"
        )
    return rows


def markdown(s: dict[str, Any]) -> list[str]:
    o = s["options"]
    return [
        "# Scaling curve (latest run)",
        "",
        f"{s['when']} — {s['machine']}; `python -m bench.scale_bench"
        f"{' --quick' if o['quick'] else ''}`: {o['duration']} s of wrk ({o['connections']} connections, "
        f"{o['threads']} thread) per pixel cell over {o['tokens']:,} distinct pixels (first pass new loads, then "
        f"repeats); {o['events']:,} pre-filled events per worker cell. Load average at start "
        f"{' / '.join(map(str, s['load_average_at_start']))} (1 / 5 / 15 min), at the end "
        f"{' / '.join(map(str, s['load_average_at_end']))}; the run took {s['run_seconds']} s.",
        "",
        f"API as shipped: {s['api_as']}. Worker as shipped: {s['worker_as']}. Each process's CPU is its "
        "utime + stime from /proc/<pid>/stat over the timed part (uvicorn's worker processes counted in "
        "the API's), per 1,000 loads (pixel cells: every request, repeats included) or events (worker "
        "cells). `cores busy` = the CPU seconds of the processes listed in the row / wall seconds, and in "
        "parentheses the whole machine's (/proc/stat), whoever used them: on this 2-core machine the curve "
        "flattens as the machine nears 2, and where the machine is at 2 but the row is well below, other "
        "work took the rest.",
        "",
        "## Pixel loads/s",
        "",
        *pixel_rows(s["pixel"]),
        "",
        "After each pixel cell one `pixeltrack worker` drains what the API enqueued; the check: openings "
        "rows == distinct pixels in them == distinct event ids == distinct pixels wrk loaded.",
        "",
        "## Worker openings/s",
        "",
        *worker_rows(s["worker"]),
        "",
        f"Layout `{o['layout']}`: with one partition every process consumes it (the consumer group shares "
        "the entries out); with 16, "
        + (
            "each process is given its own range (`--partitions 0-7`, `8-15`, ...): workers per partition, "
            "as docs/scaling.md deploys them, no two processes polling the same streams."
            if o["layout"] == "split"
            else "every process consumes every partition."
        )
        + " The clock starts when the pre-filled events become readable (the workers already started, "
        "registered, and warmed up: one event per process first, as its first classification loads the "
        "pattern data, ~0.8 s of CPU once per process) and stops when every stream is empty. The check: "
        "rows == distinct event ids == events + the warm-up events. "
        f"The database: {o['database_server']}.",
        "",
    ]
