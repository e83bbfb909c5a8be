#!/usr/bin/env python3
"""Servers that fail on purpose, for the observer network lab (internet namespace).

    python3 misbehaving.py servfail  --addr 198.18.0.3          # DNS upstream: SERVFAIL to everything
    python3 misbehaving.py tls-reset --addr 198.18.1.20 [...]   # accepts, reads the ClientHello, resets
    python3 misbehaving.py idle-cut --addr 198.18.1.41 --after 1.5 --cert C --key K
                                   # TLS and one HTTP request, then a reset after 1.5 s idle

`idle-cut` is what a middlebox with a short idle timeout does to the runner's long poll: the
request is sent, the answer is pending, and the connection is reset after a short idle time.
`tls-reset` is what SNI-filtering firewalls do: the TCP handshake completes, then the connection
is reset as soon as the client's first bytes (its TLS ClientHello) arrive, before any server data.
Stops on SIGTERM.
"""

import argparse
import ipaddress
import socket
import struct
import sys
import threading


def family(addr):
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


def servfail(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((str(addr), port))
    print(f"servfail on [{addr}]:{port}", flush=True)
    while True:
        data, peer = s.recvfrom(4096)
        if len(data) < 12:
            continue
        reply = bytearray(data)
        reply[2] = 0x80 | (data[2] & 0x79)  # QR, keep opcode and RD
        reply[3] = 0x80 | 2                  # RA, SERVFAIL
        s.sendto(bytes(reply), peer)


def tls_reset(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((str(addr), port))
    s.listen(64)
    print(f"tls-reset on [{addr}]:{port}", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=reset_after_first_bytes, args=(conn,), daemon=True).start()


def reset_after_first_bytes(conn):
    try:
        conn.settimeout(10)
        conn.recv(1)
    except OSError:
        pass
    # SO_LINGER with a zero timeout: close() sends a RST instead of a FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def idle_cut(addr, port, after, cert, key):
    import ssl
    import time
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((str(addr), port))
    s.listen(64)
    print(f"idle-cut on [{addr}]:{port} after {after} s", flush=True)

    def serve(conn):
        try:
            conn.settimeout(10)
            tls = ctx.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            time.sleep(after)
            # Reset, not a TLS close: what a middlebox dropping its state does.
            tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tls.close()
        except OSError:
            pass

    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["servfail", "tls-reset", "idle-cut"])
    ap.add_argument("--addr", action="append", required=True, type=ipaddress.ip_address)
    ap.add_argument("--port", type=int)
    ap.add_argument("--after", type=float, default=1.0, help="idle-cut: seconds before the reset")
    ap.add_argument("--cert", help="idle-cut: PEM certificate")
    ap.add_argument("--key", help="idle-cut: PEM key")
    args = ap.parse_args()
    if args.mode == "servfail":
        run, port, extra = servfail, 53, ()
    elif args.mode == "tls-reset":
        run, port, extra = tls_reset, 443, ()
    else:
        run, port, extra = idle_cut, 443, (args.after, args.cert, args.key)
    port = args.port or port
    threads = [
        threading.Thread(target=run, args=(a, port, *extra), daemon=True) for a in args.addr
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    sys.exit(main())
