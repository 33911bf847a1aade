#!/usr/bin/env python3
"""A local incoming webhook for the forwarder's test: appends each POSTed
JSON body as one line to OUT_FILE and answers 200, except that the requests
numbered in FAIL (comma-separated, counted from 1) get a 500.  Prints its
port on stdout once listening.
    webhook_receiver.py OUT_FILE [FAIL]"""
import http.server
import sys

out_file = sys.argv[1]
fail = {int(x) for x in sys.argv[2].split(",") if x} if len(sys.argv) > 2 else set()
seen = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen[0] += 1
        if seen[0] in fail:
            self.send_response(500)
            self.end_headers()
            return
        with open(out_file, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
