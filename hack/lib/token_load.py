"""Token requests for hack/bench.sh where wrk does not fit: each client a set number of
times (the first token of every client after a server starts), or a loop over every
client while the server is restarted under it.

    token_load.py once ISSUER BASIC_FILE [--threads N] [--rounds R]
    token_load.py loop ISSUER BASIC_FILE --seconds S --out RECORDS [--threads N]
    token_load.py restart-report RECORDS KILLED_AT READY_AT

BASIC_FILE holds one base64 `client_id:secret` per line. Threads keep one HTTP/1.1
connection each (reconnecting after a refusal), as a client library would.
"""

import argparse
import http.client
import threading
import time
import urllib.parse


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


class Conn:
    def __init__(self, issuer):
        u = urllib.parse.urlparse(issuer)
        self.host, self.port = u.hostname, u.port
        self.c = None

    def token(self, basic):
        """(status or 0 for a connection error, seconds)."""
        t0 = time.monotonic()
        try:
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.c.request(
                "POST",
                "/token",
                body="grant_type=client_credentials",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Authorization": "Basic " + basic,
                },
            )
            r = self.c.getresponse()
            r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            if self.c is not None:
                self.c.close()
            self.c = None
            status = 0
        return status, time.monotonic() - t0


def once(args):
    creds = [line.strip() for line in open(args.basic_file) if line.strip()]
    work = [c for _ in range(args.rounds) for c in creds]
    lock, results, nxt = threading.Lock(), [], [0]

    def worker():
        conn = Conn(args.issuer)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(work):
                return
            status, dt = conn.token(work[i])
            with lock:
                results.append((status, dt))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = [dt * 1000 for s, dt in results if s == 200]
    statuses = {}
    for s, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    print(
        "RESULT requests=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.1f statuses=%s"
        % (len(results), len(results) / elapsed, percentile(lat, 50), percentile(lat, 99),
           max(lat or [float("nan")]), statuses)
    )


def loop(args):
    creds = [line.strip() for line in open(args.basic_file) if line.strip()]
    stop_at = time.time() + args.seconds
    lock, records = threading.Lock(), []

    def worker(k):
        conn, i = Conn(args.issuer), k
        local = []
        while time.time() < stop_at:
            start = time.time()
            status, dt = conn.token(creds[i % len(creds)])
            local.append((start, i % len(creds), status, dt))
            if status == 0:
                time.sleep(0.02)  # refused while the server is down: retry soon, not in a spin
            i += args.threads
        with lock:
            records.extend(local)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(args.out, "w") as f:
        for start, client, status, dt in records:
            f.write("%.6f %d %d %.6f\n" % (start, client, status, dt))


def restart_report(args):
    recs = [line.split() for line in open(args.records)]
    recs = [(float(a), int(b), int(c), float(d)) for a, b, c, d in recs]
    killed, ready = args.killed_at, args.ready_at
    clients = {c for _, c, _, _ in recs}
    before = [r for r in recs if r[0] < killed]
    after = [r for r in recs if r[0] >= ready]
    # A request that started before the new replica was ready but was answered by it.
    down = [r for r in recs if killed <= r[0] < ready]
    served_after = {}
    for start, c, s, dt in sorted(after):
        if s == 200 and c not in served_after:
            served_after[c] = start + dt
    refused_after = sum(1 for r in after if r[2] != 200)
    first_10s = [r[3] * 1000 for r in after if r[0] < ready + 10 and r[2] == 200]
    steady = [r[3] * 1000 for r in before if r[2] == 200]
    all_back = max(served_after.values()) - ready if len(served_after) == len(clients) else float("nan")
    print(
        "RESULT clients=%d down_s=%.2f every_client_served_again_s_after_ready=%.2f "
        "refused_after_ready=%d p99_ms_first_10s_after_ready=%.2f p99_ms_before=%.2f "
        "requests_while_down=%d"
        % (len(clients), ready - killed, all_back, refused_after, percentile(first_10s, 99),
           percentile(steady, 99), len(down))
    )


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("once")
    o.add_argument("issuer")
    o.add_argument("basic_file")
    o.add_argument("--threads", type=int, default=16)
    o.add_argument("--rounds", type=int, default=1)
    o.set_defaults(fn=once)
    lp = sub.add_parser("loop")
    lp.add_argument("issuer")
    lp.add_argument("basic_file")
    lp.add_argument("--seconds", type=float, required=True)
    lp.add_argument("--out", required=True)
    lp.add_argument("--threads", type=int, default=16)
    lp.set_defaults(fn=loop)
    r = sub.add_parser("restart-report")
    r.add_argument("records")
    r.add_argument("killed_at", type=float)
    r.add_argument("ready_at", type=float)
    r.set_defaults(fn=restart_report)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
