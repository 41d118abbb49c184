#!/usr/bin/env python3
"""Assertions on a finished BenchmarkRun (JSON on stdin, `kubectl get bench NAME -o json`):
one step per load point of the spec, each with requests, throughput > 0 and no failures.
Prints the table. Standard library only. Exit 1 with the reasons when a check fails.

    kubectl get bench qwen-sim-smoke -o json | python3 e2e/check_status.py
"""

import json
import sys


def check(run):
    problems = []
    spec, status = run["spec"], run.get("status") or {}
    if status.get("phase") != "Succeeded":
        problems.append(f"phase is {status.get('phase')}, not Succeeded")
    load = spec["load"]
    key = "concurrency" if load["mode"] == "concurrency" else "rate"
    points = load[key]
    replicas = (spec.get("scaling") or {}).get("replicas") or [None]
    steps = status.get("steps") or []
    if len(steps) < len(points) * len(replicas):
        problems.append(f"{len(steps)} steps in status, {len(points) * len(replicas)} planned")
    seen = sorted({s["load"].get(key) for s in steps}, key=float)
    missing = [p for p in points if p not in seen]
    if missing:
        problems.append(f"no step for {key} {missing}")
    for s in steps:
        name = f"{key}={s['load'].get(key)}"
        if s.get("requests", 0) <= 0:
            problems.append(f"{name}: no requests")
        if s.get("failed", 0) != 0:
            problems.append(f"{name}: {s['failed']} failed requests ({s.get('errors')})")
        if s.get("succeeded", 0) != s.get("requests", 0):
            problems.append(f"{name}: {s.get('succeeded')} of {s.get('requests')} succeeded")
        if not s.get("outputTokensPerSecond", 0) > 0:
            problems.append(f"{name}: output throughput {s.get('outputTokensPerSecond')}")
        if not s.get("requestsPerSecond", 0) > 0:
            problems.append(f"{name}: request throughput {s.get('requestsPerSecond')}")
        ttft = (s.get("ttftMs") or {}).get("p95")
        if ttft is None or ttft <= 0:
            problems.append(f"{name}: no TTFT p95")
    summary = status.get("summary") or {}
    if not summary.get("peakOutputTokensPerSecond", 0) > 0:
        problems.append("summary.peakOutputTokensPerSecond missing")
    return problems


def table(run):
    rows = [f"{'load':>12} {'req':>5} {'fail':>5} {'req/s':>8} {'out tok/s':>10} {'TTFT p95':>9} {'ITL p95':>8} {'E2E p95':>8}"]
    for s in run.get("status", {}).get("steps") or []:
        point = s["load"].get("concurrency", s["load"].get("rate"))
        p95 = lambda k: (s.get(k) or {}).get("p95", float("nan"))  # noqa: E731
        rows.append(
            f"{point!s:>12} {s.get('requests', 0):>5} {s.get('failed', 0):>5} {s.get('requestsPerSecond', 0):>8.2f} "
            f"{s.get('outputTokensPerSecond', 0):>10.1f} {p95('ttftMs'):>9.1f} {p95('itlMs'):>8.2f} {p95('e2eMs'):>8.1f}"
        )
    return "\n".join(rows)


def main():
    run = json.load(sys.stdin)
    print(table(run))
    problems = check(run)
    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
