#!/usr/bin/env python3
"""Servers that fail on purpose, for the observer network lab (internet namespace).

    python3 misbehaving.py servfail  --addr 198.18.0.3          # DNS upstream: SERVFAIL to everything
    python3 misbehaving.py tls-reset --addr 198.18.1.20 [...]   # accepts, reads the ClientHello, resets

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["servfail", "tls-reset"])
    ap.add_argument("--addr", action="append", required=True, type=ipaddress.ip_address)
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    run, port = (servfail, 53) if args.mode == "servfail" else (tls_reset, 443)
    port = args.port or port
    threads = [threading.Thread(target=run, args=(a, port), daemon=True) for a in args.addr]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    sys.exit(main())
