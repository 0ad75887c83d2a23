"""The scaling curve's report (bench/scale_bench.py): the two tables, ratios against each table's
first cell, and the row checks, as the Markdown of bench/results/scale-latest.md."""

from __future__ import annotations

import math
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
        f"repeats; the last seconds repeats only, so no new load is in flight when wrk stops); {o['events']:,} pre-filled events per worker cell. Load average at start "
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
        "rows == distinct pixels in them == distinct event ids == distinct pixels wrk loaded. On the cluster, "
        "the Redis CPU is that of all 6 redis-server processes (3 masters, and the replicas applying their "
        "replication streams).",
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
        *capacity_lines(s.get("capacity")),
    ]


HEADROOM = 0.5  # every component planned at half its measured CPU capacity (send-time peaks, a peer's failover)
PRIMARY_MAX_CORES = 32  # the largest MariaDB primary the plan runs before sharding


def _cell(cells: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((c for c in cells if "check" in c and all(c.get(k) == v for k, v in match.items())), None)


def capacity(s: dict[str, Any]) -> dict[str, Any] | None:
    """CPU milliseconds per event of each component, from the baseline cells (1 API process on one
    Redis; 1 worker on 1 partition), the single box's capacity they imply, and what 10x and 100x
    of it need: docs/scaling.md's plan, computed."""
    pixel = _cell(s["pixel"], api_processes=1, redis="single Redis")
    worker = _cell(s["worker"], processes=1, partitions=1)
    if pixel is None or worker is None:
        return None
    ms = {  # s per 1,000 events == ms per event
        "api": pixel["api"]["cpu_s_per_1k"],
        "redis_enqueue": pixel["redis_cpu"]["cpu_s_per_1k"],
        "worker": worker["worker"]["cpu_s_per_1k"],
        "redis_consume": worker["redis_cpu"]["cpu_s_per_1k"],
        "mariadbd": worker["mariadbd_cpu"]["cpu_s_per_1k"],
    }
    cores = int(s["machine"].split(", ")[1].split()[0])
    box = cores * 1000 / sum(ms.values())  # events/s with every component on this box's cores
    redis_ms = ms["redis_enqueue"] + ms["redis_consume"]
    # Past one Redis node the deployment is a cluster: the API and Redis then cost what the cluster
    # cell measured (one script call per partition touched; every node's CPU, replicas included).
    on_cluster = _cell(s["pixel"], api_processes=1, redis="3-master cluster")
    cluster_ms = (
        {
            "api": on_cluster["api"]["cpu_s_per_1k"],
            "redis": on_cluster["redis_cpu"]["cpu_s_per_1k"] + ms["redis_consume"],
        }
        if on_cluster
        else None
    )
    plan = {}
    for factor in (1, 10, 100):
        rate = box * factor

        def units(cost_ms: float, rate: float = rate) -> int:
            return max(1, math.ceil(rate * cost_ms / 1000 / HEADROOM))

        workers = units(ms["worker"])
        masters, api_ms = units(redis_ms), ms["api"]
        if masters > 1:  # a cluster, of at least 3 masters
            if cluster_ms is not None:
                masters, api_ms = units(cluster_ms["redis"]), cluster_ms["api"]
            masters = max(3, masters)
        primary = units(ms["mariadbd"])
        plan[factor] = {
            "events_per_s": round(rate),
            "events_per_day": round(rate * 86_400),
            "on_cluster": masters > 1 and cluster_ms is not None,
            "api_cores": units(api_ms),
            "redis_masters": masters,
            "worker_processes": workers,
            "partitions": max(16, 2 ** math.ceil(math.log2(max(workers, 4 * masters)))),
            "primary_cores": primary,
            "shards": math.ceil(primary / PRIMARY_MAX_CORES),
        }
    best_pixel = max(c["rps"] for c in s["pixel"] if "rps" in c)
    best_worker = max(c["openings_per_s"] for c in s["worker"] if "openings_per_s" in c)
    return {
        "ms_per_event": ms,
        "cores": cores,
        "box_events_per_s": round(box),
        "measured_best_loads_per_s": round(best_pixel),
        "measured_best_openings_per_s": best_worker,
        "per_core_events_per_s": {k: round(1000 / v) for k, v in ms.items() if v > 0},
        "redis_node_events_per_s": round(1000 / redis_ms) if redis_ms else None,
        "cluster_ms_per_event": cluster_ms,
        "headroom": HEADROOM,
        "primary_max_cores": PRIMARY_MAX_CORES,
        "plan": plan,
    }


def capacity_lines(cap: dict[str, Any] | None) -> list[str]:
    if cap is None:
        return ["## Capacity per component", "", "n/a: a baseline cell is missing.", ""]
    ms, per = cap["ms_per_event"], cap["per_core_events_per_s"]
    total = sum(ms.values())
    rows = [
        f"| {f}x | {p['events_per_s']:,} | {p['events_per_day'] / 1e6:,.0f} M | {p['api_cores']} | {p['redis_masters']} "
        f"| {p['partitions']} | {p['worker_processes']} | {p['primary_cores']} | {p['shards']} |"
        for f, p in cap["plan"].items()
    ]
    return [
        "## Capacity per component (docs/scaling.md's plan)",
        "",
        "CPU per event, from the baseline cells (1 API process on one Redis; 1 worker on 1 partition): "
        + ", ".join(f"{k} {v:.4f} ms ({per.get(k, 0):,}/s per core)" for k, v in ms.items())
        + f"; in all {total:.4f} ms, so this {cap['cores']}-core box carries {cap['cores']} * 1000 / {total:.4f} = "
        f"**{cap['box_events_per_s']:,} events/s** ({cap['box_events_per_s'] * 86_400 / 1e6:,.0f} M/day) with every "
        f"component on it (measured peaks, each half alone: {cap['measured_best_loads_per_s']:,} loads/s, "
        f"{cap['measured_best_openings_per_s']:,} openings/s). One Redis node (one core) carries "
        f"{cap['redis_node_events_per_s']:,} events/s (enqueue + consume).",
        "",
        *(
            [
                f"Past one Redis node the plan is on a cluster: its API and Redis rows use the cluster cell's "
                f"costs, API {cap['cluster_ms_per_event']['api']:.4f} ms and Redis "
                f"{cap['cluster_ms_per_event']['redis']:.4f} ms per event (enqueue on all 6 nodes + consume).",
                "",
            ]
            if cap.get("cluster_ms_per_event")
            else []
        ),
        f"Each component planned at {cap['headroom']:.0%} of its measured CPU capacity; partitions ≥ worker "
        f"processes and ≥ 4 per master (a power of two, at least 16); shards = primary cores / "
        f"{cap['primary_max_cores']} (the largest primary planned).",
        "",
        "| scale | events/s | events/day | API cores | Redis masters | partitions | worker processes "
        "| primary cores | shards |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
