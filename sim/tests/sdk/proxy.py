"""A recording proxy in front of the emulator, for the request-body contract test
(tests/e2e/sdk_bodies.rs): fogbook's own ARM client talks to it, it forwards every request to
the emulator unchanged (the Host header too, so the emulator's polling URLs point back here) and
appends each request that carries a body to RECORD as one JSON line
`{"method", "path", "status", "body"}`; `contract.py --bodies RECORD` then checks the bodies
against Azure's SDK models.

    python -B proxy.py UPSTREAM_URL RECORD

Listens on 127.0.0.1 (a free port) and prints its URL as the first line of stdout; runs until
killed.
"""

import http.client
import http.server
import json
import sys
import threading
import urllib.parse

UPSTREAM = urllib.parse.urlsplit(sys.argv[1])
RECORD = sys.argv[2]
lock = threading.Lock()
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
            status = response.status
            skip = HOP_BY_HOP | {"content-length", "date", "server"}
            reply_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in skip]
        finally:
            upstream.close()
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {"__not_json__": body.decode("utf-8", "replace")}
            line = json.dumps({"method": self.command, "path": self.path, "status": status, "body": parsed})
            with lock, open(RECORD, "a", encoding="utf-8") as out:
                out.write(line + "\n")
        self.send_response(status)
        for k, v in reply_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = forward


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
