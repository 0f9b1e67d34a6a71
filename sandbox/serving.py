"""Run an ASGI app on a free loopback port in a background thread; start a Prefect server of one's own.

Used by `atx sandbox serve`, `atx demo`, the tests and the bench scripts, so every test talks real HTTP.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=f"sandbox-{self.port}")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox server on {self.base_url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextlib.contextmanager
def serve(app, host: str = "127.0.0.1", port: int | None = None) -> Iterator[BackgroundServer]:
    server = BackgroundServer(app, host, port).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def prefect_server_process(env: dict, port: int, log_path: Path, *, timeout: float = 120) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1:`port` with `env`, its output in `log_path`, until the block ends:
    yields the API's URL once its health check answers."""
    api = f"http://127.0.0.1:{port}/api"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(f"{api}/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Prefect server did not start; the end of {log_path}:\n"
                                       + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield api
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

