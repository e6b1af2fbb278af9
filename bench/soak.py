"""Soak: mixed load against a running authserver for a set time (start it with `make bench-serve`),
reporting errors by kind and the server's worker memory over time, so that a leak shows as a slope.

    .venv/bin/python bench/soak.py http://127.0.0.1:5200 --introspect-auth rs_demo:SECRET --duration 600

Each worker thread (one keep-alive connection and one signed-in browser each) runs the mix our
users make, weighted like production: mostly introspections, then refreshes of its own rotating
chain, signed-in flows (authorization request, redirect, code exchange) and registrations.
Every --sample seconds it prints the operations and errors so far and each server process's
resident memory (RSS, and PSS: the pages shared after fork split fairly); at the end, errors by
kind and, per process, the least-squares slope of its RSS over the run after the first sample
(MiB per hour; a few MiB/h of noise is normal, a steady climb is a leak). It asserts nothing and
stops by itself. Standard library only; the operations are bench/phases.py's.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from phases import BenchError, Server, Worker, memory, server_arguments, server_pids

#: The operations and their weights in the mix (per 20 operations).
MIX = (("introspect", 12), ("refresh", 5), ("signed-in flow", 2), ("registration", 1))


def error_kind(exc: Exception) -> str:
    """An error's kind: the operation and status for a wrong answer, the exception otherwise."""
    if isinstance(exc, BenchError):
        match = re.match(r"([a-z ]+): (\d{3})", str(exc))
        return f"{match.group(1)} {match.group(2)}" if match else str(exc)[:60]
    return type(exc).__name__


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if not var:
        return None
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 3600


class Soak:
    def __init__(self, server: Server, threads: int, duration: float):
        self.server = server
        self.workers = [Worker(server) for _ in range(threads)]  # each signs in and consents once
        self.deadline = time.monotonic() + duration
        self.ops = Counter()
        self.errors = Counter()
        self.first_errors: dict[str, str] = {}
        self.lock = threading.Lock()

    def run(self, worker: Worker, offset: int) -> None:
        plan = [op for op, weight in MIX for _ in range(weight)]
        for step in itertools.count(offset):
            if time.monotonic() >= self.deadline:
                return
            op = plan[step % len(plan)]
            try:
                worker.op(op)
            except (BenchError, OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                kind = error_kind(exc)
                with self.lock:
                    self.errors[kind] += 1
                    self.first_errors.setdefault(kind, f"{type(exc).__name__}: {exc}"[:300])
                if op == "refresh":  # a lost chain: start a new one, as a client would
                    try:
                        worker.tokens = self.server.flow(worker.browser)
                    except (BenchError, OSError, http.client.HTTPException, ValueError, KeyError):
                        time.sleep(0.5)
                continue
            with self.lock:
                self.ops[op] += 1


def main() -> None:
    parser = server_arguments(__doc__)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--sample", type=float, default=30, help="seconds between memory samples (default 30)")
    parser.add_argument("--threads", type=int, default=4, help="worker threads, one connection each")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("a loopback URL is expected: the server's memory is read from this machine's /proc")
    port = parts.port or 80

    soak = Soak(Server(args.url, args), args.threads, args.duration)
    pids = server_pids(port)
    print(f"{args.url}: {len(pids)} server process(es) {pids}; {args.threads} threads; {args.duration:.0f}s; "
          f"mix {', '.join(f'{op} {w}' for op, w in MIX)} per {sum(w for _, w in MIX)}", flush=True)
    threads = [threading.Thread(target=soak.run, args=(w, i * 7), daemon=True) for i, w in enumerate(soak.workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    rss: dict[int, list[tuple[float, float]]] = {}
    while True:
        elapsed = time.monotonic() - started
        rows = memory(server_pids(port))
        for pid, resident, _ in rows:
            rss.setdefault(pid, []).append((elapsed, resident))
        with soak.lock:
            done, failed = sum(soak.ops.values()), sum(soak.errors.values())
        print(f"t={elapsed:6.0f}s ops {done:>8} ({done / max(elapsed, 1e-9):6.1f}/s) errors {failed:>5} | "
              + "  ".join(f"{pid}: RSS {r:.1f}" + (f" PSS {p:.1f}" if p is not None else "") for pid, r, p in rows)
              + " MiB", flush=True)
        if not any(t.is_alive() for t in threads):
            break
        time.sleep(max(0.0, min(args.sample, soak.deadline - time.monotonic() + 0.5)))
    for thread in threads:
        thread.join()

    elapsed = time.monotonic() - started
    print(f"\n{sum(soak.ops.values())} operations in {elapsed:.0f}s: "
          + ", ".join(f"{op} {n}" for op, n in soak.ops.most_common()))
    print(f"errors: {sum(soak.errors.values())}" + ("" if soak.errors else " (none)"))
    for kind, n in soak.errors.most_common():
        print(f"  {n:>6}  {kind}   first: {soak.first_errors[kind]}")
    print("RSS slope after the first sample (MiB/hour), per process:")
    for pid, samples in sorted(rss.items()):
        slope = slope_per_hour(samples[1:])
        first, last = samples[0][1], samples[-1][1]
        print(f"  pid {pid}: {first:.1f} -> {last:.1f} MiB over {len(samples)} samples; slope "
              + (f"{slope:+.1f} MiB/h" if slope is not None else "n/a (too few samples)"))
    print(f"({os.cpu_count()} CPUs shared by the server, its database and this client)")


if __name__ == "__main__":
    main()
