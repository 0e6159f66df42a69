"""Drives the refresh-token benchmark of hack/bench.sh: SESSIONS sign-ins through the
real /authorize form (no browser: the same GET, cookie and POST a browser makes), each
followed by REFRESHES refresh-token grants in a row (each needs the token the previous one
returned), CONNECTIONS sessions at a time. Prints figures; asserts nothing about speed."""

import base64, hashlib, json, os, re, secrets, statistics, sys, threading, time
import urllib.error, urllib.parse, urllib.request

issuer, client_id, redirect, user, password = sys.argv[1:6]
SESSIONS = int(os.environ.get("SESSIONS", "20"))
REFRESHES = int(os.environ.get("REFRESHES", "50"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "8"))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(req):
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def form(path, fields, cookie=None):
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(issuer + path, data=data, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if cookie:
        req.add_header("Cookie", cookie)
    return call(req)


def sign_in():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
        "scope": "openid", "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
    })
    status, headers, body = call(urllib.request.Request(f"{issuer}/authorize?{query}"))
    assert status == 200, (status, body[:200])
    request_id = re.search(rb'name="request" value="([^"]+)"', body).group(1).decode()
    cookie = headers["Set-Cookie"].split(";")[0]
    status, headers, _ = form("/authorize/login", {"request": request_id, "username": user, "password": password}, cookie)
    assert status == 303, status
    code = urllib.parse.parse_qs(urllib.parse.urlparse(headers["Location"]).query)["code"][0]
    status, _, body = form("/token", {
        "grant_type": "authorization_code", "client_id": client_id, "code": code,
        "redirect_uri": redirect, "code_verifier": verifier,
    })
    assert status == 200, (status, body)
    return json.loads(body)["refresh_token"]


latencies, errors, lock = [], [0], threading.Lock()
sign_in_seconds = []


def session(n):
    t0 = time.perf_counter()
    token = sign_in()
    with lock:
        sign_in_seconds.append(time.perf_counter() - t0)
    for _ in range(REFRESHES):
        t = time.perf_counter()
        status, _, body = form("/token", {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token})
        dt = time.perf_counter() - t
        if status != 200:
            with lock:
                errors[0] += 1
            return
        token = json.loads(body)["refresh_token"]
        with lock:
            latencies.append(dt)


start = time.perf_counter()
pending = list(range(SESSIONS))
def worker():
    while True:
        with lock:
            if not pending:
                return
            n = pending.pop()
        session(n)
threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.perf_counter() - start
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
print("RESULT sessions=%d refreshes=%d errors=%d elapsed_s=%.1f refreshes_per_s=%.0f p50_ms=%.1f p99_ms=%.1f sign_in_p50_ms=%.0f" % (
    SESSIONS, len(latencies), errors[0], elapsed, len(latencies) / elapsed, q(0.5), q(0.99),
    statistics.median(sign_in_seconds) * 1000))
