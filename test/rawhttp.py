"""Shared by the raw-socket tests of the demo (bad_input.py, slow_clients.py,
shutdown.py): the demo as a child process, an HTTP/1.1 client on a raw socket that
tells a well-formed response from a clean close, a hang (socket timeout) or garbage,
and the checks every log line of the demo must pass.

Environment: top_builddir, top_srcdir (set by make check), MHDCTX_TEST_WRAPPER (e.g.
valgrind: timeouts are then multiplied by SLOW).
"""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

WRAPPER = shlex.split(os.environ.get("MHDCTX_TEST_WRAPPER", ""))
SLOW = 10 if WRAPPER else 1  # valgrind runs the demo some 10-50x slower
UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
# What the library lets through as a request id (README, "Request-id rules").
SAFE_ID = re.compile(r"^[A-Za-z0-9._~:@+/=-]{1,256}$")
OUTCOMES = {"completed", "client_abort", "timeout", "error", "shutdown"}
MODES = ["epoll", "poll", "select", "pool", "thread-per-connection"]  # the demo's --mode
ACCESS = "request completed"  # the access line's message (src/access_log.c)
TOKENS = ("demo-admin-token", "demo-reader-token")  # demo/tokens.json


def wait_for_port(proc, log_path, timeout, stderr):
    """The port of the demo's first line ("listening"), read from its log file; raises
    if the demo exits first (with stderr()) or says nothing within timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("demo exited early: %s" % stderr())
        with open(log_path, "rb") as f:
            first = f.readline()
        if first.endswith(b"\n"):
            line = json.loads(first)
            if line.get("message") != "listening":
                raise RuntimeError("first line is not the listening line: %r" % first)
            return int(line["port"])
        time.sleep(0.02)
    raise RuntimeError("demo did not print its port in %ds" % timeout)


class Demo:
    """demo/mhdctx-demo --port 0 --mode MODE --tokens demo/tokens.json ARGS, stdout (the
    log) and stderr (valgrind's report) in files of WORKDIR."""

    def __init__(self, mode, workdir, args=()):
        top_builddir = os.environ.get("top_builddir", ".")
        top_srcdir = os.environ.get("top_srcdir", ".")
        self.log_path = os.path.join(workdir, "demo-%s.log" % mode)
        self.err_path = os.path.join(workdir, "demo-%s.err" % mode)
        cmd = WRAPPER + [os.path.join(top_builddir, "demo", "mhdctx-demo"), "--port", "0",
                         "--mode", mode, "--tokens",
                         os.path.join(top_srcdir, "demo", "tokens.json")] + list(args)
        self._out = open(self.log_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err)
        self.pid = self.proc.pid
        self.port = self._wait_for_port(10 * SLOW)

    def _wait_for_port(self, timeout):
        return wait_for_port(self.proc, self.log_path, timeout, self.stderr)

    def stop(self, timeout=None, sig=signal.SIGTERM):
        """Signals the demo (by PID), waits for it: (exit code or None if it had to be
        killed, seconds taken)."""
        t0 = time.time()
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        try:
            code = self.proc.wait(timeout=timeout or 30 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self._out.close()
        self._err.close()
        return code, time.time() - t0

    def raw_log(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def lines(self):
        """The log lines parsed, as far as they parse (check_log says which do not)."""
        out = []
        for raw in self.raw_log().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
        return out

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def check_log(raw):
    """Problems of a log file's bytes: a line that is not one JSON object with time,
    level and message, or that holds a raw control byte (DEL included) or invalid
    UTF-8, or an unterminated last line."""
    problems = []
    if raw and not raw.endswith(b"\n"):
        problems.append("the log does not end with a newline")
    for n, line in enumerate(raw.split(b"\n")[:-1] if raw else [], 1):
        bad = [b for b in line if b < 0x20 or b == 0x7f]
        if bad:
            problems.append("line %d: raw control byte(s) %r" % (n, bytes(bad[:4])))
        try:
            doc = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            problems.append("line %d: not JSON/UTF-8 (%s): %r" % (n, e, line[:120]))
            continue
        if not isinstance(doc, dict) or not {"time", "level", "message"} <= set(doc):
            problems.append("line %d: not a log object: %r" % (n, line[:120]))
    return problems


def access_lines(lines):
    return [l for l in lines if l.get("message") == ACCESS]


class Hang(Exception):
    """The server neither answered nor closed within the timeout."""


class Malformed(Exception):
    """What came back is not an HTTP/1.x response."""


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers = headers  # [(lowercase name, value str)]
        self.body = body

    def get(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def one(self, name):
        values = self.get(name)
        return values[0] if len(values) == 1 else None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def closes(self):
        return any(v.lower() == "close" for v in self.get("connection"))

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers[:6], self.body[:80])


HEADER_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*$")
STATUS_LINE = re.compile(rb"^HTTP/(1\.[01]) ([1-5][0-9][0-9]) ([^\r\n\x00-\x08\x0a-\x1f]*)$")


class Client:
    """One connection. send(), then read() each response: a Response, or None when the
    server closed (FIN or RST) before its first byte; Hang when it did neither in time,
    Malformed when the bytes are not a response."""

    def __init__(self, port, timeout=3.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        self.buf = b""
        self.eof = False

    def send(self, data):
        """False when the server had already closed (EPIPE/ECONNRESET)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def half_close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self, reset=False):
        if reset:  # RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        self.sock.close()

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Hang("no answer and no close in %.0f s" % self.sock.gettimeout())
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise Malformed("closed in the middle of a body (%d of %d bytes)"
                                % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise Malformed("line longer than %d bytes" % limit)
            if not self._fill():
                raise Malformed("closed in the middle of a line: %r" % self.buf[:80])
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def at_eof(self):
        """True when the server closes next (nothing more comes)."""
        if self.buf:
            return False
        return not self._fill()

    def read(self, method="GET"):
        while True:
            if not self.buf and not self._fill():
                return None
            line = self._line()
            m = STATUS_LINE.match(line)
            if not m:
                raise Malformed("bad status line %r" % line[:80])
            headers = []
            while True:
                h = self._line()
                if h == b"":
                    break
                hm = HEADER_LINE.match(h)
                if not hm:
                    raise Malformed("bad header line %r" % h[:80])
                headers.append((hm.group(1).decode().lower(), hm.group(2).decode("latin-1")))
                if len(headers) > 100:
                    raise Malformed("more than 100 headers")
            status = int(m.group(2))
            resp = Response(m.group(1).decode(), status, m.group(3).decode("latin-1"),
                            headers, b"")
            if status == 100:
                continue
            te = resp.get("transfer-encoding")
            cl = resp.get("content-length")
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                return resp
            if te:
                if te != ["chunked"] or cl:
                    raise Malformed("transfer-encoding %r with content-length %r" % (te, cl))
                resp.body = self._chunked()
            elif cl:
                if len(set(cl)) != 1 or not cl[0].isdigit():
                    raise Malformed("content-length %r" % cl)
                resp.body = self._take(int(cl[0]))
            else:
                while self._fill():
                    pass
                resp.body, self.buf = self.buf, b""
            return resp

    def _chunked(self):
        body = b""
        while True:
            size_line = self._line().split(b";")[0].strip()
            if not re.match(rb"^[0-9a-fA-F]{1,16}$", size_line):
                raise Malformed("chunk size %r" % size_line)
            size = int(size_line, 16)
            if size == 0:
                while self._line() != b"":
                    pass
                return body
            body += self._take(size)
            if self._line() != b"":
                raise Malformed("chunk data not followed by CRLF")


def exchange(port, data, method="GET", half_close=False, timeout=3.0):
    """Sends DATA on a new connection and reads one response: (Response or None, Client)."""
    c = Client(port, timeout)
    c.send(data)
    if half_close:
        c.half_close()
    return c.read(method), c


def get(port, path="/", headers=(), timeout=3.0):
    """A plain GET on its own connection (Connection: close)."""
    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
    req += "".join("%s\r\n" % h for h in headers) + "\r\n"
    resp, c = exchange(port, req.encode(), timeout=timeout)
    c.close()
    return resp


class Checks:
    """ok / not ok lines under a label ("shutdown epoll: ..."), counted."""

    def __init__(self, label):
        self.label = label
        self.passed = 0
        self.failed = 0

    def check(self, what, cond, detail=""):
        if cond:
            self.passed += 1
            print("ok - %s: %s" % (self.label, what))
        else:
            self.failed += 1
            print("not ok - %s: %s %s" % (self.label, what, str(detail)[:600]))
        return bool(cond)


def run_modes(run_mode, prefix, usage):
    """main() of a test over the demo's modes: the modes named on the command line (all
    when none), each run as run_mode(mode, workdir) in one temporary directory.
    Exit status: 0 all passed, 1 a mode failed, 2 an unknown mode (usage printed)."""
    modes = sys.argv[1:] or MODES
    if [m for m in modes if m not in MODES]:
        print(usage)
        return 2
    ok = True
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        for mode in modes:
            ok = run_mode(mode, workdir) and ok
    return 0 if ok else 1
