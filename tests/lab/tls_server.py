#!/usr/bin/env python3
"""HTTPS (HTTP/1.1 over TLS) test server for the observer network lab.

Started by the Rust harness (observer-tests) inside the lab's "internet"
network namespace, one process serving every --addr given:

    python3 tls_server.py --cert server.pem --key server.key \
        --addr 198.18.1.10 --addr fd00:0:0:1::10 [--port 443]

Endpoints (anything else is 404):

    GET  /                        200, body {"lab":true}
    GET  /bytes/N                 200, exactly N body bytes (Content-Length)
    POST /echo   (or PUT)         reads the whole body, answers 200 with the
                                  same bytes back (Content-Length)
    POST /discard (or PUT)        reads the whole body, answers 200 with
                                  {"received":N}
    GET  /sleep/S                 waits S seconds (<= 60), then 200 {"slept":S}
    GET  /close-after-idle/S      200 {"idle":S}; the server then closes the
                                  connection once it has been idle for S s

Request bodies may use Content-Length or chunked transfer encoding.
The server never resolves names. It logs one line per request on stderr and
stops on SIGTERM (default action).
"""

import argparse
import ipaddress
import json
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 64 * 1024
PATTERN = bytes(range(256)) * (CHUNK // 256)
MAX_DOWNLOAD = 1 << 36
MAX_ECHO = 1 << 28
IDLE_TIMEOUT = 30.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "observer-lab"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def setup(self):
        # The TLS handshake happens here, on the handler's own thread, so a
        # slow or silent client cannot stall the accept loop.
        self.request.settimeout(self.timeout)
        self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        # Close the TLS session properly (close_notify), as real servers do,
        # then the socket.
        sock = self.request
        try:
            sock.settimeout(1.0)
            sock = sock.unwrap()
        except (OSError, ValueError):
            pass
        finally:
            sock.close()

    # -- helpers ---------------------------------------------------------

    def _send(self, code, body, content_type="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj, separators=(",", ":")).encode())

    def _read_body(self, keep, limit):
        """Reads the request body; returns (length, bytes or None)."""
        kept = bytearray() if keep else None
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += self._consume(size, kept, total, limit)
                self.rfile.readline(8)  # CRLF after the chunk
        else:
            length = self.headers.get("Content-Length")
            if length is None:
                return None, None
            total = self._consume(int(length), kept, 0, limit)
        return total, (bytes(kept) if keep else None)

    def _consume(self, size, kept, already, limit):
        if kept is not None and already + size > limit:
            raise ValueError("body too large")
        left = size
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            if kept is not None:
                kept += data
            left -= len(data)
        return size

    # -- methods ---------------------------------------------------------

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/":
            return self._json(200, {"lab": True})
        m = re.fullmatch(r"/bytes/(\d+)", path)
        if m:
            n = int(m.group(1))
            if n > MAX_DOWNLOAD:
                return self._json(413, {"error": "too large"})
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                k = min(n, CHUNK)
                self.wfile.write(PATTERN[:k])
                n -= k
            return None
        m = re.fullmatch(r"/sleep/(\d+(?:\.\d+)?)", path)
        if m:
            s = min(float(m.group(1)), 60.0)
            time.sleep(s)
            return self._json(200, {"slept": s})
        m = re.fullmatch(r"/close-after-idle/(\d+(?:\.\d+)?)", path)
        if m:
            s = min(float(m.group(1)), 300.0)
            self._json(200, {"idle": s})
            # The next request read times out after s idle seconds, which
            # makes BaseHTTPRequestHandler close the connection.
            self.request.settimeout(s)
            return None
        return self._json(404, {"error": "not found", "path": path})

    def do_POST(self):
        path = urlsplit(self.path).path
        if path not in ("/echo", "/discard"):
            # Drain the body so the connection stays usable.
            self._read_body(False, 0)
            return self._json(404, {"error": "not found", "path": path})
        try:
            n, body = self._read_body(path == "/echo", MAX_ECHO)
        except ValueError:
            self.close_connection = True
            return self._json(413, {"error": "too large"})
        if n is None:
            self.close_connection = True
            return self._json(411, {"error": "length required"})
        if path == "/echo":
            return self._send(200, body, "application/octet-stream")
        return self._json(200, {"received": n})

    do_PUT = do_POST

    def log_message(self, fmt, *args):
        sys.stderr.write("%s [%s] %s\n" % (
            time.strftime("%H:%M:%S"), self.client_address[0], fmt % args))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, port, context):
        self.address_family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        self.ssl_context = context
        super().__init__((str(addr), port), Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Not HTTPServer.server_bind: it calls socket.getfqdn(), i.e. a
        # reverse DNS lookup, which must never happen in the lab.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, OSError, ValueError)):
            # Handshake failures, resets, readiness probes that just connect
            # and close: one line instead of a traceback.
            sys.stderr.write("%s [%s] %s: %s\n" % (
                time.strftime("%H:%M:%S"), client_address[0], type(exc).__name__, exc))
        else:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", action="append", required=True, type=ipaddress.ip_address,
                    help="address to listen on (repeatable)")
    ap.add_argument("--port", type=int, default=443)
    ap.add_argument("--cert", required=True, help="PEM certificate (chain)")
    ap.add_argument("--key", required=True, help="PEM private key")
    args = ap.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])

    servers = [Server(a, args.port, context) for a in args.addr]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("listening on " + " ".join(
        "[%s]:%d" % s.server_address[:2] for s in servers), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
