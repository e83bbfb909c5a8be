#!/usr/bin/env python3
"""A small real DNS server (UDP and TCP) with behaviours dnsmasq cannot be configured for, and a
forger of DNS responses, for the observer network lab. Only lab addresses are used.

    python3 dns_lab.py server --addr 198.18.0.3 \
        --rule api.github.com:A:answer:198.18.1.10 \
        --rule api.github.com:AAAA:servfail \
        --rule ghcr.io:A:fail-first:servfail:198.18.1.16 \
        --rule big.example:A:truncate:198.18.1.20,198.18.1.21 \
        [--extra api.github.com:198.18.9.9]      # slip a record into every answer
        [--mismatch api.github.com:198.18.9.9]   # answer every query with another question

    python3 dns_lab.py send --to 198.18.0.1:40000 --source 198.18.0.2 --count 100000 \
        --name api.github.com --addr 198.18.9.9 [--id N]

Rules, per (name, type): `answer:ADDR[,ADDR...]`, `refused`, `servfail`, `nxdomain`, `nodata`,
`drop` (no answer), `fail-first:RCODE:ADDR[,...]` (the first query of that name and type gets
RCODE, later ones the addresses), `truncate:ADDR[,...]` (over UDP an empty answer with TC set,
over TCP the addresses). A question without a rule gets REFUSED. Stops on SIGTERM.
"""

import argparse
import ipaddress
import random
import socket
import struct
import sys
import threading

RCODES = {"noerror": 0, "servfail": 2, "nxdomain": 3, "refused": 5}
TYPES = {"A": 1, "AAAA": 28, "CNAME": 5}


def parse_question(data):
    """(id, flags, qname labels lower, qtype, qclass, end offset) or None."""
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if qd < 1:
        return None
    off = 12
    labels = []
    while True:
        if off >= len(data):
            return None
        n = data[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0 or off + n > len(data):
            return None
        labels.append(data[off:off + n])
        off += n
    if off + 4 > len(data):
        return None
    qtype, qclass = struct.unpack("!HH", data[off:off + 4])
    return qid, flags, labels, qtype, qclass, off + 4


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def record(name, addr, ttl=60):
    ip = ipaddress.ip_address(addr)
    rtype = 1 if ip.version == 4 else 28
    return encode_name(name) + struct.pack("!HHIH", rtype, 1, ttl, len(ip.packed)) + ip.packed


def response(qid, rd, question, rcode=0, records=(), tc=False):
    flags = 0x8000 | 0x0400 | (0x0100 if rd else 0) | 0x0080 | rcode
    if tc:
        flags |= 0x0200
    head = struct.pack("!HHHHHH", qid, flags, 1, len(records), 0, 0)
    return head + question + b"".join(records)


def question_bytes(name, qtype, qclass=1):
    return encode_name(name) + struct.pack("!HH", qtype, qclass)


class Server:
    def __init__(self, rules, extra, mismatch):
        self.rules = rules  # (name, type) -> (kind, args)
        self.extra = extra
        self.mismatch = mismatch
        self.seen = set()
        self.lock = threading.Lock()

    def answer(self, data, tcp):
        q = parse_question(data)
        if q is None:
            return None
        qid, flags, labels, qtype, qclass, end = q
        rd = bool(flags & 0x0100)
        name = b".".join(labels).decode(errors="replace").lower()
        question = data[12:end]
        if self.mismatch:
            fname, faddr = self.mismatch
            fq = question_bytes(fname, 1)
            return response(qid, rd, fq, 0, [record(fname, faddr)])
        tname = {v: k for k, v in TYPES.items()}.get(qtype, "")
        kind, args = self.rules.get((name, tname), ("refused", ""))
        if kind == "fail-first":
            rcode, addrs = args.split(":", 1)
            with self.lock:
                first = (name, tname) not in self.seen
                self.seen.add((name, tname))
            if first:
                return response(qid, rd, question, RCODES[rcode])
            kind, args = "answer", addrs
        if kind == "drop":
            return None
        if kind in RCODES:
            return response(qid, rd, question, RCODES[kind])
        if kind == "nodata":
            return response(qid, rd, question, 0)
        if kind == "truncate":
            if not tcp:
                return response(qid, rd, question, 0, tc=True)
            kind = "answer"
        if kind == "answer":
            records = [record(name, a) for a in args.split(",") if a]
            if self.extra:
                records.append(record(self.extra[0], self.extra[1]))
            return response(qid, rd, question, 0, records)
        return response(qid, rd, question, RCODES["refused"])

    def serve_udp(self, addr, port):
        ip = ipaddress.ip_address(addr)
        s = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            data, peer = s.recvfrom(4096)
            reply = self.answer(data, False)
            if reply is not None:
                s.sendto(reply, peer)

    def serve_tcp(self, addr, port):
        ip = ipaddress.ip_address(addr)
        s = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(16)
        while True:
            conn, _ = s.accept()
            threading.Thread(target=self.tcp_conn, args=(conn,), daemon=True).start()

    def tcp_conn(self, conn):
        try:
            conn.settimeout(10)
            buf = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    msg, buf = buf[2:2 + n], buf[2 + n:]
                    reply = self.answer(msg, True)
                    if reply is not None:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass
        finally:
            conn.close()


def send(args):
    host, port = args.to.rsplit(":", 1)
    host = host.strip("[]")
    ip = ipaddress.ip_address(host)
    fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.source, 53))
    q = question_bytes(args.name, 28 if ipaddress.ip_address(args.addr).version == 6 else 1)
    for _ in range(args.count):
        qid = args.id if args.id is not None else random.randrange(65536)
        s.sendto(response(qid, True, q, 0, [record(args.name, args.addr)]), (host, int(port)))
    print(f"sent {args.count}", flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--addr", required=True)
    srv.add_argument("--port", type=int, default=53)
    srv.add_argument("--rule", action="append", default=[])
    srv.add_argument("--extra")
    srv.add_argument("--mismatch")
    snd = sub.add_parser("send")
    snd.add_argument("--to", required=True)
    snd.add_argument("--source", required=True)
    snd.add_argument("--count", type=int, default=1)
    snd.add_argument("--name", required=True)
    snd.add_argument("--addr", required=True)
    snd.add_argument("--id", type=int)
    args = p.parse_args()
    if args.cmd == "send":
        send(args)
        return
    rules = {}
    for r in args.rule:
        name, rtype, kind = r.split(":", 2)
        kind, _, rest = kind.partition(":")
        rules[(name.lower().rstrip("."), rtype.upper())] = (kind, rest)
    pair = lambda v: tuple(v.rsplit(":", 1)) if v else None
    server = Server(rules, pair(args.extra), pair(args.mismatch))
    threading.Thread(target=server.serve_tcp, args=(args.addr, args.port), daemon=True).start()
    print(f"dns_lab on [{args.addr}]:{args.port}", flush=True)
    try:
        server.serve_udp(args.addr, args.port)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
