#!/usr/bin/env python3
"""pg_rls_auth benchmarks: every figure is the median of its runs (RUNS, or PAIRS or
PGBENCH_ROUNDS where a case says so), reported raw and as a ratio to a baseline measured in the
same run. Driven by scripts/bench.sh, which builds in release mode
and starts a throwaway cluster; this script only measures and writes the report."""

import argparse
import datetime
import http.server
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path

import psycopg

RUNS = 5
LIMIT = 1_000_000  # writes per hour in the limiter cases: realistic, and never reached here
ROWS = 200_000  # per-row cases
PAIRS = 15  # alternating measurements where two functions are compared
PGBENCH_ROUNDS, PGBENCH_SECONDS = 11, 3  # one transaction per check: rounds of every script, seconds each
NO_HOIST = {"pg_rls_auth.hoist_session_calls": "off"}
SUB = "6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10"
CLAIMS = {"sub": SUB, "role": "authenticated", "email": "alice@example.com", "workspace_id": "w-42",
          "app_metadata": {"tenant_id": "t1"}}


def median(fn, runs=RUNS):
    fn()  # one unmeasured run first: caches, plans and the CPU's clock settle
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


class Bench:
    def __init__(self, host, port, pgbench):
        self.conninfo = f"host={host} port={port} user=postgres dbname=bench"
        self.host, self.port, self.pgbench_path = host, port, pgbench
        self.results = []  # (case, label, value, unit, baseline label, ratio)

    def connect(self, **settings):
        conn = psycopg.connect(self.conninfo, autocommit=True)
        for name, value in settings.items():
            conn.execute(f"SET {name} = '{value}'")
        return conn

    def seconds(self, conn, sql, params=None):
        start = time.perf_counter()
        conn.execute(sql, params)
        return time.perf_counter() - start

    def record(self, case, label, value, unit, baseline=None, ratio=None, raw=None):
        self.results.append({"case": case, "label": label, "value": value, "unit": unit,
                             "baseline": baseline, "ratio": ratio, "raw": raw})
        ratio_text = f"  ({ratio:.2f}x vs {baseline})" if ratio is not None else ""
        print(f"  {case}: {label}: {value:,.1f} {unit}{ratio_text}", flush=True)

    # -- set-up ---------------------------------------------------------------------------
    def prepare(self, baselines_sql):
        with self.connect() as c:
            c.execute("CREATE EXTENSION pg_rls_auth")
            c.execute(Path(baselines_sql).read_text())
            self.private = c.execute("SELECT auth.generate_jwk('EdDSA')").fetchone()[0]
            self.public = c.execute("SELECT auth.public_jwk(%s)", [json.dumps(self.private)]).fetchone()[0]
            self.token = self.sign(c, CLAIMS, self.private)

    def sign(self, conn, claims, key, alg=None):
        claims = dict(claims, exp=int(time.time()) + 3600)
        return conn.execute("SELECT auth.sign_jwt(%s, %s, %s)",
                            [json.dumps(claims), key if isinstance(key, str) else json.dumps(key), alg]).fetchone()[0]

    # Per-call figures measure each call: hoisting (which would make the filter's accessor one
    # initplan per query) is off on these connections.
    def verified_conn(self):
        c = self.connect(max_parallel_workers_per_gather=0, **NO_HOIST)
        c.execute("SELECT set_config('pg_rls_auth.jwks', %s, false)", [json.dumps(self.public)])
        c.execute("SELECT auth.jwt_session_init(%s)", [self.token])
        return c

    def fallback_conn(self):
        c = self.connect(max_parallel_workers_per_gather=0, **NO_HOIST)
        c.execute("SELECT set_config('request.jwt.claims', %s, false)", [json.dumps(CLAIMS)])
        return c

    # -- case 1: per-row cost in a seq-scan filter ----------------------------------------
    def per_row(self):
        case = "1. per-row cost in a filter"
        query = f"SELECT count(*) FROM generate_series(1, {ROWS}) g WHERE ({{}})::text <> g::text"

        def net_ns(conn, expr, runs=RUNS):
            def once():
                return self.seconds(conn, query.format(expr)) - self.seconds(conn, query.format("'x'"))
            value, raw = median(once, runs)
            return value / ROWS * 1e9, [r / ROWS * 1e9 for r in raw]

        def paired(conn, expr, baseline, pairs=PAIRS):
            """(median of expr/baseline over alternating pairs, the ratios, expr's median ns/row)."""
            def once(e):
                return (self.seconds(conn, query.format(e)) - self.seconds(conn, query.format("'x'"))) / ROWS * 1e9
            once(expr), once(baseline)
            runs = [(once(expr), once(baseline)) for _ in range(pairs)]
            ratios = [a / b for a, b in runs]
            return statistics.median(ratios), ratios, statistics.median(a for a, _ in runs)

        for mode, conn in (("verified session", self.verified_conn()), ("fallback", self.fallback_conn())):
            with conn:
                conn.execute("SET bench.x = 'user-1'")
                base, raw = net_ns(conn, "current_setting('bench.x', true)")
                self.record(case, f"[{mode}] current_setting('x', true)", base, "ns/row", raw=raw)
                supa_uid = None
                if mode == "fallback":
                    supa_uid, raw = net_ns(conn, "bench_baseline.uid()")
                    self.record(case, f"[{mode}] Supabase-style SQL auth.uid()", supa_uid, "ns/row",
                                "current_setting", supa_uid / base, raw)
                    supa_jwt, raw = net_ns(conn, "bench_baseline.jwt() ->> 'workspace_id'")
                    self.record(case, f"[{mode}] Supabase-style SQL auth.jwt()->>'workspace_id'", supa_jwt,
                                "ns/row", "current_setting", supa_jwt / base, raw)
                hand_written = {}
                for expr in ["auth.user_id()", "auth.uid()", "auth.claim('workspace_id')",
                             "auth.session() ->> 'workspace_id'"]:
                    v, raw = net_ns(conn, expr)
                    hand_written[expr] = v
                    self.record(case, f"[{mode}] {expr}", v, "ns/row", "current_setting", v / base, raw)
                    if mode == "fallback" and expr == "auth.user_id()":
                        self.record(case, f"[{mode}] auth.user_id() speed-up over Supabase-style auth.uid()",
                                    supa_uid / v, "x", "Supabase-style auth.uid()", supa_uid / v)
                # The same answers through pgrx's #[pg_extern] (the `bench` feature's twins),
                # measured in alternation with the hand-written function: the median of the
                # per-pair ratios, so drift in the machine's speed cancels out.
                for expr, twin in [("auth.user_id()", "auth.user_id_pg_extern()"),
                                   ("auth.claim('workspace_id')", "auth.claim_pg_extern('workspace_id')")]:
                    ratio, ratios, v = paired(conn, twin, expr)
                    self.record(case, f"[{mode}] {expr} through #[pg_extern]", v, "ns/row",
                                f"hand-written {expr}, alternating pairs", ratio, ratios)
                if mode == "verified session":
                    # Revocations in force for 1,000 other users against none, alternating: the
                    # per-row path never reads them (a session is checked once per change, at
                    # a statement's start).
                    def with_revocations(present):
                        with self.connect() as admin:
                            admin.execute("DELETE FROM _pg_rls_auth.revocations")
                            if present:
                                admin.execute("SELECT count(auth.revoke_sessions('other-' || g)) "
                                              "FROM generate_series(1, 1000) g")
                        conn.execute("SELECT 1")  # the statement after a change checks once
                        return net_ns(conn, "auth.user_id()", runs=1)[0]
                    with_revocations(True), with_revocations(False)
                    runs = [(with_revocations(True), with_revocations(False)) for _ in range(PAIRS)]
                    ratios = [a / b for a, b in runs]
                    self.record(case, f"[{mode}] auth.user_id() with 1,000 revocations in force",
                                statistics.median(a for a, _ in runs), "ns/row",
                                "none in force, alternating pairs", statistics.median(ratios), ratios)
        self.per_row_with_managed_keys(case, net_ns)

    def per_row_with_managed_keys(self, case, net_ns):
        """auth.user_id() per row in a session verified by a key the worker fetched from
        pg_rls_auth.jwks_urls (a JWKS served over http on loopback), with the URL configured
        and not, alternating: the accessors read the session, never the key set."""
        jwks = json.dumps({"keys": [self.public]}).encode()

        class Jwks(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Jwks)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"

        def configure(value):
            with self.connect() as admin:
                if value:
                    admin.execute(f"ALTER SYSTEM SET pg_rls_auth.jwks_urls = '{value}'")
                else:
                    admin.execute("ALTER SYSTEM RESET pg_rls_auth.jwks_urls")
                admin.execute("SELECT pg_reload_conf()")
                deadline = time.time() + 30
                while value and admin.execute("SELECT coalesce(sum(keys), 0) FROM auth.jwks_status()").fetchone()[0] < 1:
                    assert time.time() < deadline, "the key refresher never fetched the JWKS"
                    time.sleep(0.05)
            time.sleep(0.2)  # every backend acts on the reload at its next statement

        try:
            configure(url)
            conn = self.connect(max_parallel_workers_per_gather=0, **NO_HOIST)
            # Another key stays configured throughout, so the session stays a verified one.
            conn.execute("SELECT set_config('pg_rls_auth.jwks', "
                         "auth.public_jwk(auth.generate_jwk('EdDSA'))::text, false)")
            conn.execute("SELECT auth.jwt_session_init(%s)", [self.token])

            def measure(with_url):
                configure(url if with_url else None)
                conn.execute("SELECT 1")
                assert conn.execute("SHOW pg_rls_auth.jwks_urls").fetchone()[0] == (url if with_url else "")
                assert conn.execute("SELECT auth.user_id()").fetchone()[0] == SUB
                return net_ns(conn, "auth.user_id()", runs=1)[0]

            runs = [(measure(True), measure(False)) for _ in range(PAIRS)]
            ratios = [a / b for a, b in runs]
            self.record(case, "[verified session] auth.user_id(), key fetched from pg_rls_auth.jwks_urls",
                        statistics.median(a for a, _ in runs), "ns/row",
                        "the same session with jwks_urls unset, alternating pairs",
                        statistics.median(ratios), ratios)
            conn.close()
        finally:
            configure(None)
            server.shutdown()

    # -- case 2: RLS scan -----------------------------------------------------------------
    def rls_scan(self):
        case = "2. RLS scan, 1,000,000 rows, 100 owners"
        policies = {"literal": "owner_id = 'user-7'", "bare": "owner_id = auth.user_id()",
                    "wrapped": "owner_id = (SELECT auth.user_id())"}
        with self.connect() as c:
            c.execute("CREATE ROLE bench_user")
            for name, using in policies.items():
                c.execute(f"CREATE TABLE docs_{name} (id int, owner_id text, body text)")
                c.execute(f"INSERT INTO docs_{name} SELECT g, 'user-' || (g % 100), 'body ' || g "
                          "FROM generate_series(1, 1000000) g")
                c.execute(f"VACUUM ANALYZE docs_{name}")
                c.execute(f"ALTER TABLE docs_{name} ENABLE ROW LEVEL SECURITY")
                c.execute(f"CREATE POLICY p ON docs_{name} USING ({using})")
                c.execute(f"GRANT SELECT ON docs_{name} TO bench_user")
            token = self.sign(c, {"sub": "user-7"}, self.private)

        def scan_conn(**settings):
            c = self.connect(max_parallel_workers_per_gather=0, **settings)
            c.execute("SELECT set_config('pg_rls_auth.jwks', %s, false)", [json.dumps(self.public)])
            c.execute("SET ROLE bench_user")
            c.execute("SELECT auth.jwt_session_init(%s)", [token])
            return c

        def scan_ms(c, table):
            return self.seconds(c, f"SELECT count(*) FROM {table}") * 1000

        results = {}
        with scan_conn() as c:
            for name in policies:
                assert c.execute(f"SELECT count(*) FROM docs_{name}").fetchone()[0] == 10_000
            # The tables in turn, round after round (the first unmeasured), so that a slow
            # stretch of the machine touches each of them alike.
            rounds = [{name: scan_ms(c, f"docs_{name}") for name in policies} for _ in range(RUNS + 1)][1:]
            for name in policies:
                raw = [r[name] for r in rounds]
                results[name] = (statistics.median(raw), raw)
            # bare and wrapped in alternation: the ratio of each pair, so drift cancels out.
            scan_ms(c, "docs_bare"), scan_ms(c, "docs_wrapped")
            pairs = [(scan_ms(c, "docs_bare"), scan_ms(c, "docs_wrapped")) for _ in range(PAIRS)]
        with scan_conn(**NO_HOIST) as c:
            results["bare, hoisting off"] = median(lambda: scan_ms(c, "docs_bare"))
        base = results["literal"][0]
        for name, label in [("literal", "literal owner_id = 'user-7'"),
                            ("bare", "owner_id = auth.user_id()"),
                            ("wrapped", "owner_id = (select auth.user_id())"),
                            ("bare, hoisting off", "owner_id = auth.user_id(), hoist_session_calls off")]:
            v, raw = results[name]
            self.record(case, label, v, "ms", "literal", v / base, raw)
        ratios = [a / b for a, b in pairs]
        self.record(case, "bare over wrapped, alternating pairs", statistics.median(ratios), "x",
                    "wrapped, alternating pairs", statistics.median(ratios), ratios)

    # -- case 3: session init --------------------------------------------------------------
    def session_init(self):
        case = "3. session init"
        n = 300
        with self.connect() as c:
            c.execute("CREATE TABLE tokens (alg text, tok text)")
            keys = []
            for alg in ["EdDSA", "ES256", "RS256", "PS256"]:
                private = c.execute("SELECT auth.generate_jwk(%s)", [alg]).fetchone()[0]
                keys.append(c.execute("SELECT auth.public_jwk(%s)", [json.dumps(private)]).fetchone()[0])
                c.execute("INSERT INTO tokens SELECT %s, auth.sign_jwt(jsonb_build_object('sub', 'u' || g, "
                          "'exp', extract(epoch FROM now())::int + 3600), %s) FROM generate_series(1, %s) g",
                          [alg, json.dumps(private), n])
            secret = "bench-secret-of-at-least-thirty-two-bytes"
            c.execute("INSERT INTO tokens SELECT 'HS256', auth.sign_jwt(jsonb_build_object('sub', 'u' || g, "
                      "'exp', extract(epoch FROM now())::int + 3600), %s) FROM generate_series(1, %s) g",
                      [secret, n])
        jwks = json.dumps({"keys": keys})
        with self.connect() as c:
            c.execute("SELECT set_config('pg_rls_auth.jwks', %s, false)", [jwks])
            c.execute("SELECT set_config('pg_rls_auth.jwt_secret', %s, false)", [secret])
            rates = {}
            for alg in ["EdDSA", "ES256", "RS256", "PS256", "HS256"]:
                sql = ("SELECT count(*) FROM tokens, LATERAL auth.jwt_session_init(tok) x "
                       f"WHERE alg = '{alg}'")
                v, raw = median(lambda: n / self.seconds(c, sql))
                rates[alg] = v
                self.record(case, f"fresh-token verifications, {alg}", v, "inits/s", raw=raw)
            tok = c.execute("SELECT tok FROM tokens WHERE alg = 'EdDSA' LIMIT 1").fetchone()[0]
            m = 20_000
            # In WHERE, the volatile call runs once per row (in FROM it would run once).
            sql = (f"SELECT count(*) FROM generate_series(1, {m}) g "
                   "WHERE auth.jwt_session_init(%s)::text IS NOT NULL")
            v, raw = median(lambda: m / self.seconds(c, sql, [tok]))
            self.record(case, "re-init with the same EdDSA token", v, "inits/s",
                        "fresh EdDSA", v / rates["EdDSA"], raw)

    # -- case 4: rate limiter ---------------------------------------------------------------
    def limiter(self):
        case = "4. rate limiter"
        run_id = [0]

        def timed(conn, sql, skeleton):
            """(whole query, the query with the call replaced by its key expression) in seconds."""
            return self.seconds(conn, sql), self.seconds(conn, skeleton)

        def ours(store, calls, keys):
            run_id[0] += 1
            key = f"'k' || (g % {keys})" if keys > 1 else "'k'"
            sql = (f"SELECT count(*) FROM generate_series(1, {calls}) g "
                   f"WHERE auth.check_write_rate({key}, {LIMIT}, 3600, 'run{run_id[0]}')")
            skeleton = f"SELECT count(*) FROM generate_series(1, {calls}) g WHERE ({key}) IS NOT NULL"
            with self.connect(**{"pg_rls_auth.rate_limit_store": store}) as c:
                return timed(c, sql, skeleton)

        def baseline(calls, keys):
            key = f"md5((g % {keys})::text)::uuid" if keys > 1 else f"'{SUB}'::uuid"
            sql = (f"SELECT count(*) FROM generate_series(1, {calls}) g "
                   f"WHERE bench_baseline.check_write_rate({key}, {LIMIT}, 3600)")
            skeleton = f"SELECT count(*) FROM generate_series(1, {calls}) g WHERE ({key}) IS NOT NULL"
            with self.connect() as c:
                c.execute("TRUNCATE bench_baseline.write_counts")
                return timed(c, sql, skeleton)

        def rates(fn, *args):
            """Median checks/s of the whole query, and of the calls alone (net of the skeleton)."""
            calls = args[-2]
            fn(*args)  # unmeasured warm-up, as in median()
            runs = [fn(*args) for _ in range(RUNS)]
            gross = [calls / t for t, _ in runs]
            net = [calls / (t - skel) for t, skel in runs]
            return (statistics.median(gross), gross), (statistics.median(net), net)

        (b, raw), (b_net, raw_net) = rates(baseline, 20_000, 1000)
        self.record(case, "one transaction, 1,000 keys: PL/pgSQL baseline", b, "checks/s", raw=raw)
        self.record(case, "one transaction, 1,000 keys, calls alone: PL/pgSQL baseline", b_net, "checks/s",
                    raw=raw_net)
        for store, calls in (("memory", 500_000), ("table", 200_000)):
            (v, raw), (v_net, raw_net) = rates(ours, store, calls, 1000)
            self.record(case, f"one transaction, 1,000 keys: {store} store", v, "checks/s", "PL/pgSQL", v / b, raw)
            self.record(case, f"one transaction, 1,000 keys, calls alone: {store} store", v_net, "checks/s",
                        "PL/pgSQL, calls alone", v_net / b_net, raw_net)
        for calls in (10_000, 100_000):
            (b, raw), _ = rates(baseline, calls, 1)
            self.record(case, f"one key, one transaction, {calls:,} checks: PL/pgSQL baseline", b, "checks/s",
                        raw=raw)
            for store in ("memory", "table"):
                (v, raw), _ = rates(ours, store, calls, 1)
                self.record(case, f"one key, one transaction, {calls:,} checks: {store} store", v, "checks/s",
                            "PL/pgSQL", v / b, raw)
        self.pgbench(case)

    def pgbench(self, case):
        """One transaction per check, the way an API writes one row per request. Every script
        builds its key the same way (the baseline's md5(k)::uuid, our uuid form), so key
        construction costs them the same. Three ceilings are measured beside them: the key
        expression alone (no check at all: what a free check would reach), the same with a
        transaction ID taken (the least any store that writes in the transaction pays), and a
        bare one-row UPDATE statement with no limiter logic (the least a store that keeps its
        state in a table row pays, through SQL). Both protocols: simple (psql, most drivers
        unprepared) and prepared (PostgREST's default). Each round runs every script once, back to
        back; a ratio is the median over the rounds of the ratio within one, so drift in the
        machine's speed cancels out."""
        key = "md5(:k::text)::uuid"
        table = "-c pg_rls_auth.rate_limit_store=table"
        scripts = {
            "PL/pgSQL baseline": ("", f"SELECT bench_baseline.check_write_rate({key}, {LIMIT}, 3600);"),
            "memory store": ("", f"SELECT auth.check_write_rate({key}, {LIMIT}, 3600);"),
            "table store": (table, f"SELECT auth.check_write_rate({key}, {LIMIT}, 3600);"),
            "ceiling: no check": ("", f"SELECT {key} IS NOT NULL;"),
            "ceiling: no check, a transaction ID taken": ("", f"SELECT {key} IS NOT NULL, pg_catalog.txid_current();"),
            "ceiling: a bare one-row UPDATE, no check": (
                "", f"UPDATE bench_baseline.update_floor SET count = count + 1 WHERE user_id = {key};"),
        }
        paths = {}
        for i, (label, (_, sql)) in enumerate(scripts.items()):
            paths[label] = Path(self.host) / f"bench_pgbench_{i}.sql"
            paths[label].write_text(f"\\set k random(1, 1000)\n{sql}\n")
            os.chmod(paths[label], 0o644)

        def once(label, clients, protocol):
            out = subprocess.run(
                ["runuser", "-u", "postgres", "--", "env", f"PGOPTIONS={scripts[label][0]}",
                 self.pgbench_path, "-h", self.host, "-p", str(self.port), "-U", "postgres", "-n",
                 "-M", protocol, "-f", str(paths[label]), "-c", str(clients), "-j", str(min(clients, 2)),
                 "-T", str(PGBENCH_SECONDS), "bench"],
                check=True, capture_output=True, text=True).stdout
            return float(next(line for line in out.splitlines() if line.startswith("tps")).split()[2])

        labels = list(scripts)

        def paired(raw, label, base):
            """The median of the ratios within each round, so drift between rounds cancels out."""
            return statistics.median(x / y for x, y in zip(raw[label], raw[base]))

        for protocol in ("simple", "prepared"):
            for clients in (1, 4):
                for label in labels:
                    once(label, clients, protocol)  # unmeasured warm-up, as in median()
                raw = {label: [] for label in labels}
                for r in range(PGBENCH_ROUNDS):
                    # Each round starts one script later, so none always runs after the same one.
                    for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                        raw[label].append(once(label, clients, protocol))
                where = f"{clients} client(s), {protocol} protocol"
                for label, values in raw.items():
                    base = label != "PL/pgSQL baseline"
                    self.record(case, f"one transaction per check (pgbench), {where}: {label}",
                                statistics.median(values), "checks/s", "PL/pgSQL" if base else None,
                                paired(raw, label, "PL/pgSQL baseline") if base else None, values)
                share = paired(raw, "memory store", "ceiling: no check")
                self.record(case, f"memory store as a share of the no-check ceiling, {where}", share, "x",
                            "no check", share)
                share = paired(raw, "table store", "ceiling: a bare one-row UPDATE, no check")
                self.record(case, f"table store as a share of the one-row UPDATE ceiling, {where}", share,
                            "x", "one-row UPDATE", share)

    # -- case 5: memory ----------------------------------------------------------------------
    def memory(self):
        case = "5. memory"
        with self.connect() as c:
            size = c.execute("SELECT size FROM pg_shmem_allocations WHERE name = 'pg_rls_auth'").fetchone()[0]
            slots = int(c.execute("SHOW pg_rls_auth.rate_limit_slots").fetchone()[0])
        self.record(case, "shared memory per rate-limit key (whole store / rate_limit_slots)", float(size) / slots,
                    "bytes")
        total = "SELECT sum(size) FROM pg_shmem_allocations"
        with self.connect() as other:
            before = other.execute(total).fetchone()[0]
        sessions = [self.verified_conn() for _ in range(10)]
        with self.connect() as other:
            after = other.execute(total).fetchone()[0]
        for s in sessions:
            s.close()
        self.record(case, "shared memory per backend session (all shared memory, 10 verified sessions open)",
                    float(after - before) / 10, "bytes")
        c = self.verified_conn()
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]

        def rss_kb():
            # Anonymous memory only: code and files the backend maps count in VmRSS too.
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon"):
                    return int(line.split()[1])
        c.execute("SELECT auth.end_session()")
        c.execute("SELECT auth.user_id()")
        start = rss_kb()
        big_claims = dict(CLAIMS, padding="x" * 1000)
        c.execute("SELECT auth.jwt_session_init(%s)", [self.sign(c, big_claims, self.private)])
        c.execute("SELECT auth.user_id(), auth.session(), auth.claim('workspace_id')")
        self.record(case, "backend memory for one session with 1 kB of claims (anonymous RSS growth, 4 kB pages)",
                    rss_kb() - start, "kB")
        c.close()


def svg_chart(results, path):
    rows = [r for r in results if r["ratio"] is not None and r["unit"] != "x"]
    width, bar_h, left = 980, 18, 520
    height = 40 + bar_h * len(rows) * 1.4
    top = max(r["ratio"] for r in rows)
    scale = (width - left - 80) / max(1.0, __import__("math").log10(top) + 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{int(height)}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="10" y="18" font-size="13" font-weight="bold">pg_rls_auth: ratio to the baseline of '
           'each row (log scale; cost ratios for per-row and scan cases, speed ratios elsewhere)</text>']
    import math
    for i, r in enumerate(rows):
        y = 32 + i * bar_h * 1.4
        w = max(1.0, (math.log10(r["ratio"]) + 1) * scale)
        label = r["label"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        out.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{label[:80]}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#4a7bd0"/>')
        out.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{r["ratio"]:.2f}x</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def report(bench, out_dir, name, header):
    out_dir.mkdir(parents=True, exist_ok=True)
    md, svg = out_dir / f"{name}.md", out_dir / f"{name}.svg"
    lines = [f"# pg_rls_auth benchmark, {name}", "", header, "",
             f"Each figure is the median of its runs ({RUNS} unless the runs column lists more) after one unmeasured "
             "warm-up run; ratios compare with the baseline named, measured in the same run (for one transaction "
             "per check, the median of the ratios within each round of pgbench runs).", ""]
    case = None
    for r in bench.results:
        if r["case"] != case:
            case = r["case"]
            lines += ["", f"## {case}", "", "| measurement | median | ratio | runs |", "|---|---|---|---|"]
        ratio = f"{r['ratio']:.2f}x vs {r['baseline']}" if r["ratio"] is not None else ""
        raw = ", ".join(f"{x:,.1f}" for x in r["raw"]) if r["raw"] else ""
        lines.append(f"| {r['label']} | {r['value']:,.1f} {r['unit']} | {ratio} | {raw} |")
    lines += ["", f"![chart]({svg.name})", ""]
    md.write_text("\n".join(lines))
    svg_chart(bench.results, svg)
    (out_dir / f"{name}.json").write_text(json.dumps({"header": header, "results": bench.results},
                                                     indent=1, default=float))
    print(f"wrote {md} and {svg}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--baselines", required=True)
    ap.add_argument("--pgbench", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default=datetime.date.today().isoformat(), help="report file name, no suffix")
    ap.add_argument("--header", default="")
    args = ap.parse_args()
    bench = Bench(args.host, args.port, args.pgbench)
    bench.prepare(args.baselines)
    started = time.time()
    steps = (bench.per_row, bench.rls_scan, bench.session_init, bench.limiter, bench.memory)
    only = [c for c in os.environ.get("PG_RLS_AUTH_BENCH_CASES", "").split() if c]
    for step in steps:
        if only and step.__name__ not in only:
            continue
        print(f"== {step.__name__}", flush=True)
        step()
    print(f"measured in {time.time() - started:.0f} s")
    report(bench, Path(args.out), args.name, args.header + f"\n\nPython {platform.python_version()}, psycopg {psycopg.__version__}.")


if __name__ == "__main__":
    main()
