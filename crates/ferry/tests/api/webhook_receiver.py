"""A webhook receiver for webhooks.rs: verifies each delivery with the
`standardwebhooks` package (PyPI), the library receivers use, and writes
one JSON line per request to LOG. It answers as the file MODE says at that
moment: `ok` (200), `fail` (500) or `hang` (no answer, ever).

usage: webhook_receiver.py SECRET_FILE MODE_FILE LOG [PORT]
Prints its port on the first line.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

secret_file, mode_file, log, *port = sys.argv[1:]
lock = threading.Lock()


def read(path):
    with open(path) as f:
        return f.read().strip()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        mode = read(mode_file)
        record = {"webhook_id": self.headers.get("webhook-id"), "mode": mode}
        try:
            record["event"] = Webhook(read(secret_file)).verify(body, dict(self.headers.items()))
            record["verified"] = True
        except Exception as e:  # noqa: BLE001 - the test reports any failure
            record["verified"] = False
            record["error"] = repr(e)
        with lock, open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
        if mode == "hang":
            threading.Event().wait()
        self.send_response(200 if mode == "ok" else 500)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(port[0]) if port else 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
