"""A stand-in for AMD's KDS: an HTTP server on 127.0.0.1 that answers every GET alike.

Shared by the VCEK tests (tests/tee/snp) and the revocation tests of both
tests/tee/snp and tests/verifier; never reaches beyond the loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeKds:
    """Answers every GET with ``status`` and ``body``; records the paths asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.status = 200
        self.body = b""
        kds = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kds.paths.append(self.path)
                self.send_response(kds.status)
                self.send_header("Content-Length", str(len(kds.body)))
                self.end_headers()
                self.wfile.write(kds.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def running_kds() -> Iterator[FakeKds]:
    """A FakeKds serving until the block ends."""
    fake = FakeKds()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join()
