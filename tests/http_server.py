"""A real HTTP server on 127.0.0.1 for download tests, with faults to inject per path."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` ({url path: bytes}). `faults[path]` is a list consumed one per request: "503" answers
    503, "cut" sends the headers and half the body then closes, None serves normally."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.faults: dict[str, list[str | None]] = {}
        self.requests: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests[self.path] += 1
                body = server.files.get(self.path)
                fault = server.faults.get(self.path, [None]).pop(0) if server.faults.get(self.path) else None
                if body is None:
                    self.send_error(404)
                elif fault == "503":
                    self.send_error(503)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if fault == "cut" else body)

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
