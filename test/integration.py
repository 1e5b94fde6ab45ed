#!/usr/bin/python3
"""Integration tests: start demo/mhdctx-demo in one threading mode, drive it with curl.

usage: integration.py MODE   (epoll|poll|select|pool|thread-per-connection)

The demo listens on 127.0.0.1 on an ephemeral port (its first stdout line says which),
is stopped by PID with SIGTERM, and must exit 0. Set MHDCTX_TEST_WRAPPER to run it
under a tool (e.g. "valgrind --error-exitcode=99 --leak-check=full").
Exit status: 0 pass, 1 fail, 77 skip (curl missing).
"""
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawhttp import Checks, wait_for_port  # noqa: E402

UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TOKEN = "demo-admin-token"
HOSTILE_IDS = {  # raw header value -> reason the access line must give
    "x" * 129: "too_long",
    "has space": "invalid_character",
    'quote"d': "invalid_character",
    "comment*/end": "invalid_character",
    "semi;colon": "invalid_character",
    "tab\tinside": "invalid_character",
    "caf\u00e9": "invalid_character",
    "<script>": "invalid_character",
}


class Demo:
    def __init__(self, mode, workdir, extra_args=()):
        os.makedirs(workdir, exist_ok=True)
        top_builddir = os.environ.get("top_builddir", ".")
        top_srcdir = os.environ.get("top_srcdir", ".")
        self.log_path = os.path.join(workdir, "demo.log")
        self.err_path = os.path.join(workdir, "demo.err")
        wrapper = shlex.split(os.environ.get("MHDCTX_TEST_WRAPPER", ""))
        cmd = wrapper + [os.path.join(top_builddir, "demo", "mhdctx-demo"), "--port", "0",
                         "--mode", mode, "--tokens",
                         os.path.join(top_srcdir, "demo", "tokens.json")] + list(extra_args)
        self.log = open(self.log_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.err)
        self.port = self._wait_for_port(60 if wrapper else 10)
        self.base = "http://127.0.0.1:%d" % self.port

    def _wait_for_port(self, timeout):
        return wait_for_port(self.proc, self.log_path, timeout,
                             lambda: open(self.err_path).read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        self.err.close()
        return code

    def lines(self):
        with open(self.log_path, "rb") as f:
            return [json.loads(raw) for raw in f.read().splitlines()]

    def raw_log(self):
        with open(self.log_path, "rb") as f:
            return f.read()


def curl(url, headers=(), method=None, data_file=None, extra=()):
    """Returns (status, headers dict lowercased -> list, body bytes)."""
    cmd = ["curl", "-sS", "--max-time", "60", "-D", "-", "-o", "-"]
    if method:
        cmd += ["-X", method]
    for h in headers:
        cmd += ["-H", h]
    if data_file:
        cmd += ["--data-binary", "@" + data_file]
    cmd += list(extra) + [url]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return status, hdrs, body


def access_lines(lines, request_id):
    return [l for l in lines if l.get("message") == "request completed"
            and l.get("request_id") == request_id]


def test_basic(demo, t, sent):
    status, hdrs, body = curl(demo.base + "/", ["X-Request-Id: it-basic-1"])
    sent.append("it-basic-1")
    t.check("incoming id echoed in header", hdrs.get("x-request-id") == ["it-basic-1"], hdrs)
    t.check("incoming id echoed in body", json.loads(body) == {
        "request_id": "it-basic-1", "user_id": None}, body)
    status, hdrs, body = curl(demo.base + "/")
    rid = hdrs.get("x-request-id", [""])[0]
    sent.append(rid)
    t.check("generated id is a lowercase UUID v4", UUID_V4.match(rid), rid)
    t.check("generated id in body", json.loads(body)["request_id"] == rid, body)


def test_hostile_ids(demo, t, sent, replaced):
    for raw, reason in HOSTILE_IDS.items():
        status, hdrs, body = curl(demo.base + "/", ["X-Request-Id: " + raw])
        rid = hdrs.get("x-request-id", [""])[0]
        sent.append(rid)
        replaced[rid] = (raw, reason)
        t.check("hostile id %r replaced by a UUID" % raw[:20], UUID_V4.match(rid), rid)
        t.check("hostile id %r absent from response" % raw[:20],
                raw.encode() not in body and json.loads(body)["request_id"] == rid)
    # Sent twice: ambiguous, replaced.
    status, hdrs, body = curl(demo.base + "/", ["X-Request-Id: first-id", "X-Request-Id: second-id"],
                              extra=["--http1.1"])
    rid = hdrs.get("x-request-id", [""])[0]
    sent.append(rid)
    replaced[rid] = ("first-id", "multiple")
    t.check("repeated id header replaced", UUID_V4.match(rid), rid)


def test_auth(demo, t, sent):
    status, hdrs, body = curl(demo.base + "/whoami", ["X-Request-Id: it-anon-whoami"])
    sent.append("it-anon-whoami")
    t.check("whoami without token is 401", status == 401, status)
    t.check("401 carries WWW-Authenticate: Bearer",
            hdrs.get("www-authenticate", [""])[0].startswith("Bearer"), hdrs)
    t.check("401 body has error and request_id", json.loads(body).get("request_id") == "it-anon-whoami")
    status, hdrs, body = curl(demo.base + "/whoami",
                              ["X-Request-Id: it-auth-ok", "Authorization: Bearer " + TOKEN])
    sent.append("it-auth-ok")
    doc = json.loads(body)
    t.check("whoami with token is 200", status == 200, status)
    t.check("whoami returns user and roles",
            doc.get("user_id") == "42" and doc.get("roles") == ["admin", "reader"], doc)
    for name, value in [("unknown", "Bearer not-a-token"), ("malformed", "Bearer a b"),
                        ("basic", "Basic dXNlcjpwYXNz"), ("empty", "Bearer ")]:
        rid = "it-auth-" + name
        status, hdrs, body = curl(demo.base + "/", ["X-Request-Id: " + rid, "Authorization: " + value])
        sent.append(rid)
        t.check("%s token on / is 401 (never anonymous)" % name, status == 401, status)
        t.check("%s token 401 has WWW-Authenticate" % name,
                hdrs.get("www-authenticate", [""])[0].startswith("Bearer"))
        t.check("%s token 401 body is JSON with id" % name,
                json.loads(body) == {"error": "invalid_token", "request_id": rid}, body)


def test_users(demo, t, sent):
    status, hdrs, body = curl(demo.base + "/users/7", ["X-Request-Id: it-users-7"])
    sent.append("it-users-7")
    t.check("/users/7 is 200", status == 200 and json.loads(body)["name"] == "Grace Hopper", body)
    status, hdrs, body = curl(demo.base + "/users/999", ["X-Request-Id: it-users-999"])
    sent.append("it-users-999")
    t.check("/users/999 is 404 JSON", status == 404 and
            json.loads(body) == {"error": "user_not_found", "request_id": "it-users-999"}, body)


def test_routes(demo, t, sent):
    status, hdrs, body = curl(demo.base + "/nope", ["X-Request-Id: it-404"])
    sent.append("it-404")
    t.check("unknown path is 404 JSON", status == 404 and json.loads(body)["request_id"] == "it-404")
    status, hdrs, body = curl(demo.base + "/users/7", ["X-Request-Id: it-405"], method="DELETE")
    sent.append("it-405")
    t.check("wrong method is 405 JSON", status == 405 and json.loads(body)["request_id"] == "it-405"
            and hdrs.get("x-request-id") == ["it-405"])
    status, hdrs, body = curl(demo.base + "/health", ["X-Request-Id: it-health"])
    t.check("/health answers 200 with the id", status == 200 and hdrs.get("x-request-id") == ["it-health"])
    # Routed on the decoded path, the one the access-log filter matches too.
    status, hdrs, body = curl(demo.base + "/users/%37")
    t.check("/users/%37 is /users/7", status == 200 and json.loads(body)["name"] == "Grace Hopper",
            body)
    status, hdrs, body = curl(demo.base + "/h%65alth")
    t.check("/h%65alth is /health", status == 200 and json.loads(body) == {"status": "ok"}, body)
    # A wrong method is answered at the request's end on every route: an answer at the
    # first call makes MHD close the connection, and the client's next request needs a
    # new one.
    # (/%61sync: the decoded /async, whose access lines test_async counts by their path.)
    for path in ("/echo", "/%61sync", "/users/7"):
        out = subprocess.run(["curl", "-sS", "--max-time", "60", "-X", "DELETE", "-o", "/dev/null",
                              "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                              demo.base + path, demo.base + "/"],
                             stdout=subprocess.PIPE, check=True).stdout
        t.check("DELETE %s is 405 on a connection kept open" % path,
                out.decode().split("\n")[:2] == ["405 1", "405 0"], out)


def test_echo(demo, t, sent, workdir):
    big = os.path.join(workdir, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(900 * 1024))
    status, hdrs, body = curl(demo.base + "/echo", ["X-Request-Id: it-echo-big",
                                                    "Content-Type: application/octet-stream"],
                              data_file=big)
    sent.append("it-echo-big")
    t.check("900 KiB POST echoed whole", status == 200 and body == open(big, "rb").read(),
            "%d %d" % (status, len(body)))
    # An empty Content-Type (MHD refuses to send one): echoed as octet-stream.
    status, hdrs, body = curl(demo.base + "/echo", ["X-Request-Id: it-echo-untyped",
                                                    "Content-Type;"], data_file=big)
    sent.append("it-echo-untyped")
    t.check("empty Content-Type echoed as octet-stream",
            status == 200 and hdrs.get("content-type") == ["application/octet-stream"] and
            hdrs.get("x-request-id") == ["it-echo-untyped"], "%d %s" % (status, hdrs))
    huge = os.path.join(workdir, "huge.bin")
    with open(huge, "wb") as f:
        f.write(b"z" * (1024 * 1024 + 1))
    status, hdrs, body = curl(demo.base + "/echo", ["X-Request-Id: it-echo-huge"], data_file=huge)
    sent.append("it-echo-huge")
    t.check("body over 1 MiB is 413 JSON", status == 413 and
            json.loads(body) == {"error": "body_too_large", "request_id": "it-echo-huge"}, status)
    status, hdrs, body = curl(demo.base + "/echo", ["X-Request-Id: it-echo-chunked",
                                                    "Transfer-Encoding: chunked"], data_file=huge)
    sent.append("it-echo-chunked")
    t.check("chunked body over 1 MiB is 413 JSON", status == 413, status)


def test_concurrency(demo, t, count=300):
    def one(n):
        rid = "it-conc-%d" % n
        status, hdrs, body = curl(demo.base + "/users/%d" % n, ["X-Request-Id: " + rid])
        return n, rid, status, hdrs.get("x-request-id"), json.loads(body)["request_id"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(count)))
    bad = [r for r in results if r[3] != [r[1]] or r[4] != r[1]]
    t.check("%d parallel requests each echo their own id" % count, not bad, bad[:3])
    return ["it-conc-%d" % n for n in range(count)]


def test_async(demo, t, count=200):
    """Work handed to the demo's worker pool (suspend/resume, or a waiting handler in
    thread-per-connection mode): each worker line carries its own request's id, user
    and trace."""
    def one(n):
        rid = "it-async-%d" % n
        headers = ["X-Request-Id: " + rid]
        if n % 2:
            headers.append("Authorization: Bearer " + TOKEN)
        status, hdrs, body = curl(demo.base + "/async", headers)
        return rid, status, json.loads(body)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(count)))
    bad = [r for r in results if r[1] != 200 or r[2]["request_id"] != r[0]]
    t.check("%d parallel /async requests answered with their own id" % count, not bad, bad[:3])
    return {rid: body for rid, status, body in results}


def check_async_logs(lines, t, answers):
    by_id = {}
    for l in lines:
        if str(l.get("message", "")).startswith("async: "):
            by_id.setdefault(l.get("request_id"), []).append(l)
    wrong = []
    for rid, body in answers.items():
        worker = by_id.get(rid, [])
        user = "42" if int(rid.rsplit("-", 1)[1]) % 2 else None
        if len(worker) != 2 or any(l.get("trace_id") != body["trace_id"] or
                                   l.get("user_id") != user for l in worker):
            wrong.append((rid, worker))
    t.check("every /async request has its two worker lines, with its own id, user and trace",
            not wrong, wrong[:2])
    t.check("no worker line carries an unknown request id",
            set(by_id) <= set(answers), sorted(set(by_id) - set(answers))[:3])
    acc = [l for l in lines if l.get("message") == "request completed" and l.get("path") == "/async"]
    t.check("one access line per /async request, after the work",
            len(acc) == len(answers) and all(l["duration_ms"] >= 10 for l in acc),
            len(acc))


def check_logs(demo, t, sent, replaced, conc_ids):
    raw = demo.raw_log()
    try:
        lines = demo.lines()
        t.check("every log line is valid JSON", True)
    except ValueError as e:
        t.check("every log line is valid JSON", False, e)
        return
    t.check("first line carries the port", lines[0].get("port") == demo.port)
    t.check("the token never reaches a log line", TOKEN.encode() not in raw and b"not-a-token" not in raw)
    t.check("Authorization values never reach a log line", b"dXNlcjpwYXNz" not in raw)
    for raw_id, reason in replaced.values():
        t.check("raw hostile id %r in no log line" % raw_id[:20],
                json.dumps(raw_id)[1:-1].encode() not in raw and raw_id.encode() not in raw)
    for rid, (raw_id, reason) in replaced.items():
        acc = access_lines(lines, rid)
        t.check("access line says id replaced: %s" % reason,
                len(acc) == 1 and acc[0].get("request_id_replaced") == reason, acc)
    for rid in sent:
        acc = access_lines(lines, rid)
        t.check("one access line for %s" % rid[:24], len(acc) == 1, len(acc))
    acc = access_lines(lines, "it-users-7")[0]
    t.check("access line fields", acc["method"] == "GET" and acc["path"] == "/users/7" and
            acc["status"] == 200 and acc["outcome"] == "completed" and
            isinstance(acc["duration_ms"], (int, float)) and acc["level"] == "info", acc)
    nested = [l for l in lines if l.get("request_id") == "it-users-7" and l.get("id") == "7"]
    t.check("three nested functions log with the request id and id field",
            {l["message"] for l in nested} >= {"handler: get user", "service: fetching user",
                                               "repository: looking up user"}, nested)
    auth_lines = [l for l in lines if l.get("request_id") == "it-auth-ok"]
    t.check("lines after auth carry user_id 42",
            auth_lines and all(l.get("user_id") == "42" for l in auth_lines), auth_lines)
    t.check("401 access line is warn", access_lines(lines, "it-auth-unknown")[0]["level"] == "warn")
    t.check("/health is left out of the access log",
            not [l for l in lines if l.get("path") == "/health"])
    big = [l for l in lines if l.get("request_id") == "it-echo-big"]
    t.check("large POST: one context for every handler call",
            len(access_lines(lines, "it-echo-big")) == 1 and
            any(l.get("bytes") == 900 * 1024 for l in big), big)
    mixed = [l for l in lines if str(l.get("request_id", "")).startswith("it-conc-") and
             "id" in l and l["request_id"] != "it-conc-" + l["id"]]
    t.check("no concurrent log line carries another request's id", not mixed, mixed[:3])
    paths = [l for l in lines if l.get("message") == "request completed" and
             str(l.get("request_id", "")).startswith("it-conc-") and
             l["path"] != "/users/" + l["request_id"][len("it-conc-"):]]
    t.check("no concurrent access line carries another request's path", not paths, paths[:3])
    t.check("stop is logged", lines[-1].get("message") == "stopped")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if not shutil.which("curl"):
        print("curl not found: skipping")
        return 77
    mode = sys.argv[1]
    t = Checks(mode)
    with tempfile.TemporaryDirectory(prefix="mhdctx-it-") as workdir:
        demo = Demo(mode, workdir)
        sent, replaced = [], {}
        try:
            test_basic(demo, t, sent)
            test_hostile_ids(demo, t, sent, replaced)
            test_auth(demo, t, sent)
            test_users(demo, t, sent)
            test_routes(demo, t, sent)
            test_echo(demo, t, sent, workdir)
            conc = test_concurrency(demo, t)
            answers = test_async(demo, t)
        finally:
            code = demo.stop()
        t.check("demo exits 0 on SIGTERM (valgrind/ASan clean when wrapped)", code == 0,
                "exit %s; stderr: %s" % (code, open(demo.err_path, errors="replace").read()[-3000:]))
        check_logs(demo, t, sent, replaced, conc)
        check_async_logs(demo.lines(), t, answers)
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
