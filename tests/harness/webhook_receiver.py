#!/usr/bin/env python3
"""A webhook alert receiver for the container fleet (TEST DOUBLE of a team's alert endpoint).

Alertmanager POSTs its webhook payload (version 4: status, receiver, groupLabels, commonLabels, alerts[] with
labels, annotations, startsAt, endsAt, fingerprint) to any path; each payload is appended, one JSON object a
line, to the file given. GET answers 200 with the count, so a test can wait for it to listen.
Standard library only: it runs with the host's python3.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    port, path = int(sys.argv[1]), sys.argv[2]
    # on the test fleet's network, for every Alertmanager of the fleet (default: loopback only)
    bind = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = json.loads(body)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            with lock, open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"path": self.path, "payload": payload}) + "\n")
                count[0] += 1
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            data = json.dumps({"received": count[0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer((bind, port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
