"""Benchmark of the phases our users hit, against a running authserver (start it with `make bench-serve`).

    .venv/bin/python bench/phases.py http://127.0.0.1:5200 --introspect-auth rs_demo:SECRET
    .venv/bin/python bench/phases.py http://127.0.0.1:5200 --introspect-auth rs_demo:SECRET \\
        --phases refresh,introspect -n 3000          # the data-growth runs (docs/benchmarks.md)

Phases (each N operations, or --flow-n for the two flows, shared by --threads worker threads, each
with its own keep-alive connection):
  registration    a public client registers (RFC 7591)
  signed-in flow  a person already signed in, consent remembered: authorization request, redirect
                  with the code, code exchange (PKCE S256)
  flow            a person with a fresh browser: the same, through the HTML sign-in and consent
                  forms (hidden fields and CSRF tokens are read from the pages)
  refresh         each thread follows its own chain of rotating refresh tokens
  introspect      the resource server introspects live access tokens (each must be active)
  mixed           what a worker serving both sees: each thread refreshes its chain once in every
                  ten operations and otherwise introspects its current access token

For each it prints ops/s, latency p50/p99, HTTP requests per operation and the server's CPU time
per operation, read from /proc for the processes listening on the port and their descendants
(so run it on the server's machine), the CPU of this machine's PostgreSQL and Redis processes per
operation (all of their work: run it when nothing else uses them), then the resident memory of those processes. It asserts
nothing: the numbers are for reading. Endpoints come from the authorization server metadata.
Standard library only; the client shares the machine with the server (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import itertools
import json
import os
import secrets
import threading
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

PHASES = ("registration", "signed-in flow", "flow", "refresh", "introspect", "mixed")
#: The mixed phase: one refresh in every MIXED_EVERY operations of a thread, introspections between.
MIXED_EVERY = 10
REDIRECT_URI = "https://bench-client.example/callback"


class BenchError(Exception):
    """An operation that did not end as the protocol says it should."""


# --- HTTP: one keep-alive connection per thread, cookies per simulated browser -------------------
class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, url: str):
        self.status, self.body, self.url = status, body, url
        self.headers = {k.lower(): v for k, v in headers}
        self.cookies = [v for k, v in headers if k.lower() == "set-cookie"]

    def json(self):
        return json.loads(self.body)

    @property
    def location(self) -> str | None:
        return urljoin(self.url, self.headers["location"]) if "location" in self.headers else None


class Connection:
    """A persistent HTTP/1.1 connection to the server; counts the requests it sends."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.base, self.host, self.port = base, parts.hostname, parts.port or 80
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0

    def request(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> Response:
        url = urljoin(self.base, url)
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, target, body=body, headers=headers or {})
                r = self.conn.getresponse()
                response = Response(r.status, r.getheaders(), r.read(), url)
                self.requests += 1
                return response
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")


class Browser:
    """A cookie jar on top of a connection: one person's browser."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self.cookies: dict[str, str] = {}

    def request(self, method: str, url: str, form: dict | list | None = None) -> Response:
        headers = {"Accept": "text/html,application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = self.connection.request(method, url, body, headers)
        for cookie in response.cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in cookie.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)
        return response


# --- HTML forms ----------------------------------------------------------------------------------
class Forms(HTMLParser):
    """Every form of a page: action, method, fields and submit buttons."""

    def __init__(self, html: str):
        super().__init__()
        self.forms: list[dict] = []
        self._button: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                               "inputs": [], "buttons": []})
        elif not self.forms:
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "submit":
                self.forms[-1]["buttons"].append({**a, "text": a.get("value", "")})
            else:
                self.forms[-1]["inputs"].append({**a, "type": kind})
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self._button = {**a, "text": ""}
            self.forms[-1]["buttons"].append(self._button)

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag):
        if tag == "button":
            self._button = None


def fill(page: Response, username: str, password: str) -> tuple[str, list[tuple[str, str]]]:
    """The sign-in or consent form of a page, filled in as a person would: (action URL, fields)."""
    for form in Forms(page.body.decode("utf-8", "replace")).forms:
        if form["method"] != "post":
            continue
        kinds = {i["type"] for i in form["inputs"]}
        allow = [b for b in form["buttons"] if "disabled" not in b
                 and {b.get("value", "").lower(), b["text"].strip().lower()} & {"allow", "approve"}]
        if "password" not in kinds and not allow:
            continue
        fields = []
        for i in form["inputs"]:
            name, kind = i.get("name"), i["type"]
            if not name or "disabled" in i:
                continue
            if kind == "password":
                fields.append((name, password))
            elif kind in ("text", "email") and not i.get("value"):
                fields.append((name, username))
            elif kind in ("checkbox", "radio"):
                if "checked" in i:
                    fields.append((name, i.get("value", "on")))
            else:
                fields.append((name, i.get("value", "")))
        if allow and allow[0].get("name"):
            fields.append((allow[0]["name"], allow[0].get("value", "")))
        return urljoin(page.url, form["action"] or page.url), fields
    raise BenchError(f"no sign-in or consent form on {page.url} ({page.status})")


# --- the OAuth operations ------------------------------------------------------------------------
class Server:
    def __init__(self, base: str, args):
        self.base, self.args = base.rstrip("/"), args
        meta = Connection(base).request("GET", "/.well-known/oauth-authorization-server")
        if meta.status != 200:
            raise SystemExit(f"no metadata at {base}: {meta.status}")
        self.meta = meta.json()
        ident, _, secret = args.introspect_auth.removeprefix("basic:").partition(":")
        self.introspect_auth = "Basic " + base64.b64encode(f"{ident}:{secret}".encode()).decode()
        self.client_id = self.register(Connection(base))

    def register(self, conn: Connection) -> str:
        body = json.dumps({"client_name": "Bench client", "redirect_uris": [REDIRECT_URI],
                           "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                           "response_types": ["code"]}).encode()
        r = conn.request("POST", self.meta["registration_endpoint"], body, {"Content-Type": "application/json"})
        if r.status != 201:
            raise BenchError(f"registration: {r.status} {r.body[:200]!r}")
        return r.json()["client_id"]

    def flow(self, browser: Browser) -> dict:
        """Authorization request to token response, through whatever pages the server shows."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                  "resource": self.args.resource, "scope": self.args.scope}
        page = browser.request("GET", self.meta["authorization_endpoint"] + "?" + urlencode(params))
        for _ in range(8):
            if page.status in (301, 302, 303, 307, 308):
                target = page.location
                if target.startswith(REDIRECT_URI):
                    query = parse_qs(urlsplit(target).query)
                    if query.get("state") != [state] or "code" not in query:
                        raise BenchError(f"redirect without code or with another state: {target[:200]}")
                    return self.token(browser.connection, {
                        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI,
                        "client_id": self.client_id, "code_verifier": verifier, "resource": self.args.resource})
                page = browser.request("GET", target)
            elif page.status == 200 and page.headers.get("content-type", "").startswith("text/html"):
                action, fields = fill(page, self.args.username, self.args.password)
                page = browser.request("POST", action, fields)
            else:
                raise BenchError(f"{page.status} at {page.url}: {page.body[:200]!r}")
        raise BenchError("the flow did not come back to the redirect URI")

    def token(self, conn: Connection, form: dict) -> dict:
        r = conn.request("POST", self.meta["token_endpoint"], urlencode(form).encode(),
                         {"Content-Type": "application/x-www-form-urlencoded"})
        if r.status != 200:
            raise BenchError(f"token endpoint: {r.status} {r.body[:200]!r}")
        return r.json()

    def introspect(self, conn: Connection, token: str) -> None:
        r = conn.request("POST", self.meta["introspection_endpoint"], urlencode({"token": token}).encode(),
                         {"Content-Type": "application/x-www-form-urlencoded", "Authorization": self.introspect_auth})
        if r.status != 200 or r.json().get("active") is not True:
            raise BenchError(f"introspection: {r.status} {r.body[:200]!r}")


class Worker:
    """One thread's state: its connection, its signed-in browser and its token chain."""

    def __init__(self, server: Server):
        self.server = server
        self.connection = Connection(server.base)
        self.browser = Browser(self.connection)
        self.tokens = server.flow(self.browser)  # signs in and consents once: later flows are signed in
        self.ops = 0

    def op(self, phase: str) -> None:
        s = self.server
        self.ops += 1
        if phase == "mixed":
            phase = "refresh" if self.ops % MIXED_EVERY == 0 else "introspect"
        if phase == "registration":
            s.register(self.connection)
        elif phase == "signed-in flow":
            s.flow(self.browser)
        elif phase == "flow":
            s.flow(Browser(self.connection))
        elif phase == "refresh":
            self.tokens = s.token(self.connection, {"grant_type": "refresh_token", "client_id": s.client_id,
                                                    "refresh_token": self.tokens["refresh_token"]})
        elif phase == "introspect":
            s.introspect(self.connection, self.tokens["access_token"])


# --- the server's processes, from /proc ----------------------------------------------------------
def server_pids(port: int) -> list[int]:
    """Processes holding a socket listening on the port, and all their descendants."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in list(f)[1:]:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":  # 0A: LISTEN
                        inodes.add(cols[9])
        except FileNotFoundError:
            continue
    listening, parents = set(), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes}:
                    listening.add(int(pid))
                    break
        except OSError:
            continue
    found, added = set(listening), True
    while added:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        added = bool(children)
    return sorted(found)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


#: Processes whose CPU is the store's, not the server's: the database and Redis on this machine.
STORE_PROCESSES = ("postgres", "redis-server")


def store_pids() -> list[int]:
    """The PostgreSQL and Redis processes on this machine (all of them: other clients count too)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                name = f.read().split("(", 1)[1].split(")", 1)[0]
        except OSError:
            continue
        if name.startswith(STORE_PROCESSES):
            found.append(int(pid))
    return found


def memory(pids: list[int]) -> list[tuple[int, float, float | None]]:
    """(pid, RSS MiB, PSS MiB) per process: PSS splits the pages shared after fork fairly."""
    rows = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
            pss = None
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
            except (OSError, StopIteration):
                pass
            rows.append((pid, rss, pss))
        except (OSError, StopIteration):
            continue
    return rows


# --- running the phases --------------------------------------------------------------------------
def run_phase(phase: str, workers: list[Worker], n: int, port: int) -> dict:
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    requests_before = sum(w.connection.requests for w in workers)

    def loop(worker: Worker):
        mine, failed = [], []
        while next(counter) < n:
            t0 = time.perf_counter()
            try:
                worker.op(phase)
            except (BenchError, OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                failed.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    pids, stores = server_pids(port), store_pids()
    cpu0, store0, t0 = cpu_seconds(pids), cpu_seconds(stores), time.perf_counter()
    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu, store = time.perf_counter() - t0, cpu_seconds(pids) - cpu0, cpu_seconds(stores) - store0
    latencies.sort()
    done = len(latencies)
    pct = lambda q: latencies[min(done - 1, int(q * done))] * 1000 if done else float("nan")  # noqa: E731
    return {"phase": phase, "ok": done, "errors": len(errors), "first_error": errors[0] if errors else None,
            "ops_per_s": done / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "requests_per_op": (sum(w.connection.requests for w in workers) - requests_before) / max(done, 1),
            "server_cpu_ms_per_op": cpu * 1000 / done if done and pids else None,
            "store_cpu_ms_per_op": store * 1000 / done if done and stores else None}


def server_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser with the arguments that name the server, the demo person and the resource."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the running server, e.g. http://127.0.0.1:5200")
    parser.add_argument("--introspect-auth", required=True, metavar="ID:SECRET",
                        help="the resource server's introspection credentials (make bench-serve prints them)")
    parser.add_argument("--username", default="demo@example.com")
    parser.add_argument("--password", default="demo-password")
    parser.add_argument("--resource", default="http://127.0.0.1:8001/mcp")
    parser.add_argument("--scope", default="crm.objects.contacts.read")
    return parser


def main() -> None:
    parser = server_arguments(__doc__)
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from: {', '.join(PHASES)}")
    parser.add_argument("-n", type=int, default=1000, help="operations per phase (registration, refresh, introspect)")
    parser.add_argument("--flow-n", type=int, default=100, help="operations per flow phase")
    parser.add_argument("--threads", type=int, default=8, help="worker threads, one connection each")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",")]
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    parts = urlsplit(args.url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("a loopback URL is expected: the server's CPU is read from this machine's /proc")

    server = Server(args.url, args)
    workers = [Worker(server) for _ in range(args.threads)]  # each signs in and consents once (warm-up)
    port = parts.port or 80
    pids = server_pids(port)
    print(f"{args.url}: {len(pids)} server process(es) {pids}; {args.threads} threads; {os.cpu_count()} CPUs shared")
    print(f"{'phase':>15} {'ok':>6} {'errors':>6} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/op':>6} "
          f"{'server CPU ms/op':>16} {'db+redis CPU ms/op':>18}")
    for phase in PHASES:
        if phase not in phases:
            continue
        r = run_phase(phase, workers, args.flow_n if "flow" in phase else args.n, port)
        cpu = f"{r['server_cpu_ms_per_op']:.2f}" if r["server_cpu_ms_per_op"] is not None else "-"
        store = f"{r['store_cpu_ms_per_op']:.2f}" if r["store_cpu_ms_per_op"] is not None else "-"
        print(f"{phase:>15} {r['ok']:>6} {r['errors']:>6} {r['ops_per_s']:>8.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['requests_per_op']:>6.1f} {cpu:>16} {store:>18}", flush=True)
        if r["first_error"]:
            print(f"{'':>15} first error: {r['first_error'][:300]}")
    rows = memory(server_pids(port))
    print("server memory: " + ", ".join(
        f"pid {pid} RSS {rss:.0f} MiB" + (f" (PSS {pss:.0f})" if pss is not None else "") for pid, rss, pss in rows)
        + (f"; total PSS {sum(p for _, _, p in rows if p):.0f} MiB" if rows and rows[0][2] is not None else ""))


if __name__ == "__main__":
    main()
