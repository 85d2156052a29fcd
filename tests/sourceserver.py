"""A loopback file server standing in for the hosts of official checkpoints (tests only).

Serves ``--root`` read-only on 127.0.0.1 (a free port, printed as ``PORT <n>`` on stdout), laid out as
``<root>/<host>/<path>`` so that ``PORTHUB_SOURCE_MIRROR=http://127.0.0.1:<n>`` maps every catalogued
``https://<host>/<path>`` onto it. It honours ``Range: bytes=N-`` (206 with Content-Range) unless
``--ignore-range``, and ``--cut-after BYTES --cuts K`` makes the first K responses announce the whole
length but close the connection after BYTES bytes of the body, as a dropped transfer does; with
``--stall`` they keep the connection open after BYTES bytes and send nothing more (a transfer hanging
until its client is killed). Every request is logged to ``--log`` as one JSON line (method, path, Range
header, status, bytes sent), a stalled one when it stalls.

Run: ``python tests/sourceserver.py --root DIR --log FILE [--cut-after N --cuts K [--stall]] [--ignore-range]``;
stop it with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class _State:
    def __init__(self, root: str, log: str, cut_after: int, cuts: int, ignore_range: bool,
                 stall: bool = False) -> None:
        self.root = os.path.realpath(root)
        self.stall = stall
        self.log = log
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.ignore_range = ignore_range
        self.lock = threading.Lock()

    def take_cut(self) -> bool:
        with self.lock:
            if self.cut_after >= 0 and self.cuts_left > 0:
                self.cuts_left -= 1
                return True
            return False

    def record(self, **entry: object) -> None:
        with self.lock, open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the JSON log says it all
        pass

    def _path(self) -> str | None:
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        path = os.path.realpath(os.path.join(self.state.root, rel))
        if not path.startswith(self.state.root + os.sep) or not os.path.isfile(path):
            return None
        return path

    def _serve(self, body: bool) -> None:
        path = self._path()
        header = self.headers.get("Range")
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.state.record(method=self.command, path=self.path, range=header, status=404, sent=0)
            return
        size = os.path.getsize(path)
        start, status = 0, 200
        match = _RANGE.fullmatch(header or "")
        if match and not self.state.ignore_range:
            start = int(match.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.state.record(method=self.command, path=self.path, range=header, status=416, sent=0)
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "none" if self.state.ignore_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        sent = 0
        if body:
            limit = self.state.cut_after if self.state.take_cut() else -1
            with open(path, "rb") as fh:
                fh.seek(start)
                while True:
                    want = 1 << 16 if limit < 0 else min(1 << 16, limit - sent)
                    block = fh.read(want) if want > 0 else b""
                    if not block:
                        break
                    self.wfile.write(block)
                    sent += len(block)
            if limit >= 0:
                self.wfile.flush()
                self.close_connection = True
                if self.state.stall:
                    self.state.record(method=self.command, path=self.path, range=header, status=status, sent=sent,
                                      stalled=True)
                    time.sleep(3600)  # the client is killed meanwhile; the thread is a daemon
                    return
        self.state.record(method=self.command, path=self.path, range=header, status=status, sent=sent)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(False)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cut-after", type=int, default=-1)
    p.add_argument("--cuts", type=int, default=0)
    p.add_argument("--ignore-range", action="store_true")
    p.add_argument("--stall", action="store_true")
    args = p.parse_args()
    Handler.state = _State(args.root, args.log, args.cut_after, args.cuts, args.ignore_range, args.stall)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
