"""Real servers for interop tests: a Flask app over HTTP in a thread, and subprocesses (such as the
example MCP server under uvicorn), each on a free 127.0.0.1 port, stopped by the caller."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx2
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
CRM_MCP_DIR = ROOT / "examples" / "crm_mcp"
HOST = "127.0.0.1"
#: Seconds between a server loop's checks for shutdown (and so at most how long stopping takes).
POLL_INTERVAL = 0.05
#: The example CRM MCP server's own data (records, seats, access rules), in its working folder.
CRM_DATABASE = "crm.sqlite3"


def free_port() -> int:
    """A port free right now (the kernel picks it); the caller binds it moments later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LiveFlask:
    """A WSGI app served by werkzeug's threaded server in a daemon thread."""

    def __init__(self):
        self.server = make_server(HOST, 0, _not_ready, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://{HOST}:{self.port}"
        self.thread: threading.Thread | None = None

    def start(self, app) -> "LiveFlask":
        self.server.app = app
        # shutdown() waits for the loop to look at its flag again, by default every 0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                                       name=f"live-flask-{self.port}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread:
            self.thread.join(timeout=10)


def _not_ready(environ, start_response):
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not started"]


@contextmanager
def live_flask(make_app_with_issuer):
    """Serve `make_app_with_issuer(url)` (the URL is known before the app is built, so it can be
    the issuer) and yield the LiveFlask; stopped on exit."""
    live = LiveFlask()
    try:
        live.start(make_app_with_issuer(live.url))
        yield live
    finally:
        live.stop()


class NotReady(RuntimeError):
    """A process that started but never answered."""


class Process:
    """A subprocess whose output goes to a log file (shown when it fails to start)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def output(self) -> str:
        """What the process has printed so far (also after stop())."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, url: str, timeout: float = 20.0) -> None:
        """Poll `url` until it answers below 500; fail with the process output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx2.get(url, timeout=1.0).status_code < 500:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise NotReady(f"not ready after {timeout}s: {url}\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@contextmanager
def crm_mcp_server(*, issuer: str, port: int, client_id: str, client_secret: str, workdir: Path,
                   cache_seconds: float | None = None):
    """Run the example CRM MCP server (`python -m crm_mcp`) on 127.0.0.1:`port`; yields its
    Process once its protected resource metadata answers."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CRM_MCP_", "AUTHSERVER_"))},
        "PYTHONPATH": os.pathsep.join(filter(None, [str(CRM_MCP_DIR), os.environ.get("PYTHONPATH")])),
        "CRM_MCP_ISSUER": issuer,
        "CRM_MCP_RESOURCE": f"http://{HOST}:{port}/mcp",
        "CRM_MCP_CLIENT_ID": client_id,
        "CRM_MCP_CLIENT_SECRET": client_secret,
        "CRM_MCP_DATABASE": str(workdir / CRM_DATABASE),
        "CRM_MCP_HOST": HOST,
        "CRM_MCP_PORT": str(port),
    }
    if cache_seconds is not None:
        env["CRM_MCP_CACHE_SECONDS"] = str(cache_seconds)
    process = Process([sys.executable, "-m", "crm_mcp"], env, workdir / "crm_mcp.log")
    try:
        process.wait_ready(f"http://{HOST}:{port}/.well-known/oauth-protected-resource/mcp")
        yield process
    finally:
        process.stop()
