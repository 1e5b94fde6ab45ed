#!/usr/bin/python3
"""Security checks of the demo (README "Security"): what must never reach a log line
and where the demo must never call.

- Secrets: valid and invalid bearer tokens, Basic credentials, Proxy-Authorization,
  Cookie values and a token in the query string are sent; none of them appears in any
  byte of the log, and the access line of each request is there.
- Outgoing calls: POST /test (the W3C harness's endpoint) asks the demo to call URLs;
  every one that is not plain loopback - other hosts, user-info tricks, look-alike
  host names, other schemes - is refused and logged, and no outgoing call is made.
- Edge mode: with --distrust-request-id an incoming id is never used.

usage: security.py   (top_builddir/top_srcdir from the environment)
Exit status: 0 pass, 1 fail, 77 skip (curl missing).
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from integration import Checks, Demo, curl  # noqa: E402

SECRETS = {
    "valid token": ("Authorization: Bearer demo-admin-token", "demo-admin-token"),
    "invalid token": ("Authorization: Bearer not-a-known-token-5f1e", "not-a-known-token-5f1e"),
    "basic credentials": ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    "proxy credentials": ("Proxy-Authorization: Bearer proxy-secret-77aa", "proxy-secret-77aa"),
    "cookie": ("Cookie: session=cookie-secret-c0ffee; theme=dark", "cookie-secret-c0ffee"),
}

REFUSED_URLS = [
    "http://10.255.255.1:9/",
    "http://example.com/",
    "http://127.0.0.1.nip.io/",
    "http://localhost.example.com/",
    "http://127.0.0.1@10.255.255.1/",
    "http://localhost:80@example.com/",
    "https://127.0.0.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
    "http://127.0.0.1\r\nHost: evil/",
    "",
]


def test_secrets(demo, t):
    ids = []
    for name, (header, _) in SECRETS.items():
        rid = "sec-" + name.replace(" ", "-")
        status, _, _ = curl(demo.base + "/users/1", [header, "X-Request-Id: " + rid])
        t.check("%s: answered (%d)" % (name, status), status in (200, 401), status)
        ids.append(rid)
    status, _, _ = curl(demo.base + "/users/1?access_token=query-secret-9e9e",
                        ["X-Request-Id: sec-query"])
    ids.append("sec-query")
    return ids, [secret for _, secret in SECRETS.values()] + ["query-secret-9e9e"]


def test_refused_urls(demo, t, workdir):
    body = [{"url": url, "arguments": []} for url in REFUSED_URLS]
    path = os.path.join(workdir, "calls.json")
    with open(path, "w") as f:
        json.dump(body, f)
    status, _, _ = curl(demo.base + "/test", ["Content-Type: application/json",
                                              "X-Request-Id: sec-calls"],
                        method="POST", data_file=path)
    t.check("POST /test with non-loopback urls answered", status == 200, status)


def check_logs(demo, t, ids, secrets, calls):
    raw = demo.raw_log()
    for secret in secrets:
        t.check("secret %r in no log line" % secret, secret.encode() not in raw)
    lines = demo.lines()
    for rid in ids:
        access = [l for l in lines if l.get("message") == "request completed"
                  and l.get("request_id") == rid]
        t.check("access line of %s" % rid, len(access) == 1, len(access))
    if not calls:
        return
    refusals = [l for l in lines if l.get("message") == "trace test: refusing a non-loopback url"]
    t.check("every non-loopback url refused and logged",
            sorted(l.get("url") or "" for l in refusals) == sorted(REFUSED_URLS),
            [l.get("url") for l in refusals])
    outgoing = [l for l in lines if l.get("message") == "outgoing request completed"]
    t.check("no outgoing call made", outgoing == [], outgoing[:2])


def test_edge_mode(workdir, t):
    demo = Demo("epoll", os.path.join(workdir, "edge"), ["--distrust-request-id"])
    try:
        _, hdrs, _ = curl(demo.base + "/", ["X-Request-Id: chosen-by-the-client"])
        given = hdrs.get("x-request-id", [""])[0]
        t.check("edge: incoming id not used", given != "chosen-by-the-client", given)
    finally:
        code = demo.stop()
    t.check("edge: demo exits 0", code == 0, code)
    lines = demo.lines()
    access = [l for l in lines if l.get("message") == "request completed"]
    t.check("edge: access line says untrusted",
            len(access) == 1 and access[0].get("request_id_replaced") == "untrusted", access)
    t.check("edge: the client's id is in no line", b"chosen-by-the-client" not in demo.raw_log())


def built_with_curl():
    config = os.path.join(os.environ.get("top_builddir", "."), "config.h")
    with open(config) as f:
        return "#define MHDCTX_HAVE_CURL 1" in f.read()


def main():
    if shutil.which("curl") is None:
        print("curl missing")
        return 77
    t = Checks("security")
    calls = built_with_curl()  # without libcurl the demo has no POST /test
    if not calls:
        print("# built without libcurl: the outgoing-call checks are left out")
    with tempfile.TemporaryDirectory(prefix="mhdctx-security-") as workdir:
        demo = Demo("epoll", os.path.join(workdir, "main"),
                    ["--trace-context-test"] if calls else [])
        try:
            ids, secrets = test_secrets(demo, t)
            if calls:
                test_refused_urls(demo, t, workdir)
        finally:
            code = demo.stop()
        t.check("demo exits 0", code == 0, code)
        check_logs(demo, t, ids, secrets, calls)
        test_edge_mode(workdir, t)
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 0 if t.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
