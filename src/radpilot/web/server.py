"""Run the FastAPI app with uvicorn in a thread of ``radpilot serve``."""

from __future__ import annotations

import threading
import time

import uvicorn

from radpilot.core.settings import Settings
from radpilot.store import Database

__all__ = ["WebServer"]


class WebServer:
    """uvicorn serving :func:`radpilot.web.app.create_app` on ``settings.http_port``."""

    def __init__(self, settings: Settings, db: Database) -> None:
        from radpilot.web.app import create_app

        self.settings = settings
        self.app = create_app(settings, db)
        config = uvicorn.Config(
            self.app,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,  # open event streams must not hold the stop up
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when the setting was 0)."""
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.settings.http_port

    def start(self, timeout: float = 30.0) -> None:
        """Start serving; returns once the port is bound.

        Raises
        ------
        OSError
            If uvicorn did not start (port in use) within ``timeout``.
        """
        self._thread = threading.Thread(target=self.server.run, name="radpilot-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(
                    f"the web API could not listen on {self.settings.http_host}:"
                    f"{self.settings.http_port}; is the port in use? (--http-port)"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop accepting requests and finish the ones in progress."""
        self.app.state.closing.set()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
