"""A real HTTP server on 127.0.0.1 for download tests, with faults to inject per path, and HTTP ranges."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` ({url path: bytes}), honouring `Range: bytes=N-` with 206 answers. `faults[path]` is a list
    consumed one per request: "503" answers 503, "cut" sends the headers and half of the body then closes the
    connection, "slow" sends the body in small pieces over about `slow_s` seconds, None serves normally.
    `ranges[path]` records the first byte asked for by each request."""

    def __init__(self, files: dict[str, bytes], slow_s: float = 1.0):
        self.files = files
        self.faults: dict[str, list[str | None]] = {}
        self.requests: Counter = Counter()
        self.ranges: dict[str, list[int]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests[self.path] += 1
                body = server.files.get(self.path)
                fault = server.faults.get(self.path, [None]).pop(0) if server.faults.get(self.path) else None
                if body is None:
                    self.send_error(404)
                    return
                if fault == "503":
                    self.send_error(503)
                    return
                start = 0
                asked = self.headers.get("Range")
                if asked and asked.startswith("bytes=") and asked.endswith("-"):
                    start = int(asked[len("bytes="):-1])
                server.ranges.setdefault(self.path, []).append(start)
                if start >= len(body) and asked:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                part = body[start:]
                self.send_response(206 if asked else 200)
                if asked:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if fault == "cut":
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault == "slow":
                    pieces = 10
                    step = max(1, -(-len(part) // pieces))
                    for offset in range(0, len(part), step):
                        self.wfile.write(part[offset:offset + step])
                        self.wfile.flush()
                        time.sleep(server.slow_s / pieces)
                    return
                self.wfile.write(part)

            def log_message(self, *args) -> None:
                pass

        self.slow_s = slow_s
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
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
