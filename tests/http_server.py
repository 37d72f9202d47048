"""A real HTTP server on 127.0.0.1 for download tests, with faults to inject per path, and HTTP ranges."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` ({url path: bytes}), honouring `Range: bytes=N-` and `bytes=N-M` with 206 answers, and HEAD.
    `faults[path]` is a list consumed one per GET: "503" answers 503, "429" answers 429 with `Retry-After:
    retry_after_s`, "cut" sends the headers and half of the body then closes the connection, "slow" sends the body in
    small pieces over about `slow_s` seconds, None serves normally. A HEAD consumes a leading "503" or "429" (the
    other faults are about bodies). `ranges[path]` records the first byte asked for by each GET; `log` holds
    (method, path, Range header, X-Ccpipeline-Reader header) of every request."""

    def __init__(self, files: dict[str, bytes], slow_s: float = 1.0, retry_after_s: int = 1):
        self.files = files
        self.faults: dict[str, list[str | None]] = {}
        self.requests: Counter = Counter()
        self.ranges: dict[str, list[int]] = {}
        self.log: list[tuple[str, str, str | None, str | None]] = []
        self.retry_after_s = retry_after_s
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _status_fault(self, fault: str | None) -> bool:
                if fault == "503":
                    self.send_error(503)
                    return True
                if fault == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", str(server.retry_after_s))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                return False

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                server.log.append(("HEAD", self.path, None, self.headers.get("X-Ccpipeline-Reader")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                queued = server.faults.get(self.path)
                if queued and queued[0] in ("503", "429") and self._status_fault(queued.pop(0)):
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                asked = self.headers.get("Range")
                server.log.append(("GET", self.path, asked, self.headers.get("X-Ccpipeline-Reader")))
                server.requests[self.path] += 1
                body = server.files.get(self.path)
                fault = server.faults.get(self.path, [None]).pop(0) if server.faults.get(self.path) else None
                if body is None:
                    self.send_error(404)
                    return
                if self._status_fault(fault):
                    return
                start, last = 0, len(body) - 1
                if asked and asked.startswith("bytes="):
                    first, _, end = asked[len("bytes="):].partition("-")
                    start = int(first)
                    last = min(last, int(end)) if end else last
                server.ranges.setdefault(self.path, []).append(start)
                if start >= len(body) and asked:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                part = body[start:last + 1]
                self.send_response(206 if asked else 200)
                if asked:
                    self.send_header("Content-Range", f"bytes {start}-{last}/{len(body)}")
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
