"""scripts/bench.d/dns.py — a small authoritative DNS server on loopback UDP
for the bench: answers A, AAAA, MX, TXT and PTR questions from a table, NXDOMAIN
for names it does not have, an empty answer for a type a name lacks. It is what
tern's resolver asks when the incoming-mail checks (sender domain, SPF, DMARC,
iprev) run under load, so those checks cost real lookups without leaving the
machine. One thread; a query is a few microseconds of Python.
"""

import socket
import struct
import threading

A, PTR, MX, TXT, AAAA = 1, 12, 15, 16, 28


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def rdata(rtype, value):
    if rtype == A:
        return socket.inet_pton(socket.AF_INET, value)
    if rtype == AAAA:
        return socket.inet_pton(socket.AF_INET6, value)
    if rtype == PTR:
        return encode_name(value)
    if rtype == MX:
        pref, host = value
        return struct.pack("!H", pref) + encode_name(host)
    if rtype == TXT:
        raw = value.encode()
        return b"".join(bytes([len(raw[i:i + 255])]) + raw[i:i + 255] for i in range(0, len(raw), 255))
    raise ValueError(rtype)


class DnsServer:
    """Answers from `records`: {(name, type): [value, ...]} (names without the
    trailing dot, any case). Counts the queries it answered."""

    def __init__(self, records):
        self.records = {}
        self.names = set()
        for (name, rtype), values in records.items():
            key = (name.lower().rstrip("."), rtype)
            self.records[key] = [rdata(rtype, v) for v in values]
            self.names.add(key[0])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, name="bench-dns", daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.answer(data)
            if reply:
                self.queries += 1
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def answer(self, data):
        if len(data) < 12:
            return None
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        if flags & 0x8000 or qd != 1:
            return None
        labels, i = [], 12
        while i < len(data) and data[i] != 0:
            n = data[i]
            if n & 0xC0 or i + 1 + n > len(data):
                return None
            labels.append(data[i + 1:i + 1 + n].decode(errors="replace"))
            i += 1 + n
        if i + 5 > len(data):
            return None
        qtype, _qclass = struct.unpack("!HH", data[i + 1:i + 5])
        question = data[12:i + 5]
        name = ".".join(labels).lower()
        answers = self.records.get((name, qtype), [])
        rcode = 0 if name in self.names else 3  # NXDOMAIN
        # QR, AA, RD copied, RA.
        out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        out = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0) + question
        for rd in answers:
            # The name is a pointer to the question's (offset 12).
            out += struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(rd)) + rd
        return out

    def close(self):
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()
