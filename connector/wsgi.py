"""A WSGI application served by waitress on one address, in a thread of its own: bound when built
(so a port in use is known before anything else starts), started, and stopped from any thread.
The metrics server with the status pages and the webhook receiver both run on it."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from waitress.server import create_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WsgiServer:
    """`app` on `host:port` (port 0: any free one, see `port`). Binding errors are OSError."""

    def __init__(self, app: WsgiApp, host: str, port: int, *, name: str = "http", threads: int = 4, max_body_bytes: int = 65536) -> None:
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="jobylon-connector",
            connection_limit=64,
            channel_timeout=30,
            max_request_header_size=65536,
            max_request_body_size=max_body_bytes,  # the pages are GETs; a webhook delivery is small
            expose_tracebacks=False,
            asyncore_loop_timeout=1,
            clear_untrusted_proxy_headers=True,
        )
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = threading.Event()

    @property
    def server_address(self) -> tuple[str, int]:
        """The address bound (socketserver's name for it, kept from the server this one replaced)."""
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    def server_close(self) -> None:
        """socketserver's name for closing the listening socket; `stop` does that and ends the threads."""
        self.stop()

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:  # the loop ends when stop() closes its sockets; anything else is worth a line
            if not self._stopped.is_set():
                logging.getLogger("connector.wsgi").exception("the %s server stopped", self._thread.name)

    def start(self) -> WsgiServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Let the requests being served finish, then close the listening socket and every
        connection inside the server's own loop, and end its thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        server = self._server
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)

        def close_all() -> None:
            for channel in list(server._map.values()):
                with suppress(OSError):  # a descriptor already gone: the channel leaves the map all the same
                    if channel is server:
                        server.close()  # the listening socket (its handle_close would log "unhandled close event")
                    else:
                        channel.handle_close()  # connections, and the trigger's pipe

        if self._thread.is_alive():
            try:
                server.trigger.pull_trigger(close_all)
            except OSError:  # the trigger's pipe is gone (seen once, EBADF, under a loaded test run): close from here
                close_all()
            self._thread.join(timeout)
        else:
            close_all()


def bind_problem(host: str, port: int, exc: OSError, key: str) -> str:
    """One line for a listening socket that could not be had, naming the address and the key."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use ({key}); choose another port or stop what holds it"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where} ({key}): permission denied; choose a port of 1024 or above"
    return f"cannot listen on {where} ({key}): {(exc.strerror or str(exc)).lower()}"
