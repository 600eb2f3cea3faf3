#!/usr/bin/env python3
"""Cluster DNS benchmark: `capstan dns` against knot and unbound, with dnsperf.

    scripts/deps.sh --bench && cargo build --release --bin capstan
    python3 bench/dns.py [--services 10000] [--headless 100] [--endpoints 10] [--seconds 15]

Starts a release `capstan server` on loopback, writes the services with `capstan ctl`
(10k ClusterIP services, 100 headless services with 10 endpoints each, through
EndpointSlices), starts `capstan dns` fed by it, and, in the same run, knot
(authoritative, from a zone file with the same records, generated from the store's
objects) and unbound (the same records as local-data). Each server gets two
threads/workers. dnsperf then sends the same query file to each:

  - throughput: as fast as they answer (`-c 4 -q 200`), for --seconds;
  - latency: a fixed 10k queries/s for --seconds, every answer's latency kept
    (`-v`), p50 and p99 reported.

Every process listens on 127.0.0.1 only, runs for a bounded time, and is stopped
(by PID) at the end, also on failure. Prints a markdown table for BENCHMARKS.md.
"""

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/capstan/target"))
CAPSTAN = os.path.join(TARGET, "release", "capstan")
ZONE = "cluster.local"
NS = "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, log):
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_dns(port, name, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", "+short", name],
            capture_output=True, text=True)
        if r.stdout.strip():
            return
        time.sleep(0.2)
    raise SystemExit(f"no answer for {name} on port {port} within {timeout}s")


def manifests(services, headless, endpoints):
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"]
    for i in range(services):
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata: {{name: web-{i}, namespace: {NS}}}\n"
            "spec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n")
    for j in range(headless):
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata: {{name: hl-{j}, namespace: {NS}}}\n"
            "spec:\n  clusterIP: None\n  ports: [{name: http, port: 80}]\n")
        eps = "".join(f"- addresses: [10.{200 + j // 250}.{j % 250}.{k + 1}]\n" for k in range(endpoints))
        docs.append(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            f"metadata:\n  name: hl-{j}-1\n  namespace: {NS}\n"
            f"  labels: {{kubernetes.io/service-name: hl-{j}}}\n"
            "addressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\n"
            f"endpoints:\n{eps}")
    return "---\n".join(docs)


def records(store):
    """(owner, type, rdata) of the whole zone, from the store's objects."""
    out = subprocess.run(
        [CAPSTAN, "ctl", "--endpoints", store, "get", "services", "-n", NS, "-o", "json"],
        check=True, capture_output=True, text=True).stdout
    svcs = json.loads(out)["items"]
    out = subprocess.run(
        [CAPSTAN, "ctl", "--endpoints", store, "get", "endpointslices", "-n", NS, "-o", "json"],
        check=True, capture_output=True, text=True).stdout
    slices = {}
    for s in json.loads(out)["items"]:
        slices.setdefault(s["metadata"]["labels"]["kubernetes.io/service-name"], []).append(s)
    recs = [
        (f"{ZONE}.", "SOA", f"ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 5"),
        (f"{ZONE}.", "NS", f"ns.dns.{ZONE}."),
        (f"ns.dns.{ZONE}.", "A", "127.0.0.1"),
        (f"dns-version.{ZONE}.", "TXT", '"1.1.0"'),
    ]
    for s in svcs:
        name = s["metadata"]["name"]
        fq = f"{name}.{NS}.svc.{ZONE}."
        ip = s["spec"].get("clusterIP")
        if ip and ip != "None":
            recs.append((fq, "A", ip))
            for p in s["spec"]["ports"]:
                recs.append((f"_{p['name']}._tcp.{fq}", "SRV", f"0 100 {p['port']} {fq}"))
            recs.append((ipaddress.ip_address(ip).reverse_pointer + ".", "PTR", fq))
        else:
            eps = [(a, sl["ports"]) for sl in slices.get(name, []) for e in sl["endpoints"] for a in e["addresses"]]
            weight = max(1, 100 // max(1, len(eps)))
            for a, ports in eps:
                label = a.replace(".", "-")
                recs.append((fq, "A", a))
                recs.append((f"{label}.{fq}", "A", a))
                for p in ports:
                    recs.append((f"_{p['name']}._tcp.{fq}", "SRV", f"0 {weight} {p['port']} {label}.{fq}"))
    return recs


def queries(services, headless):
    q = [f"web-{i}.{NS}.svc.{ZONE} A" for i in range(services)]
    q += [f"hl-{j}.{NS}.svc.{ZONE} A" for j in range(headless)]
    q += [f"_http._tcp.hl-{j}.{NS}.svc.{ZONE} SRV" for j in range(headless)]
    q += [f"_http._tcp.web-{i}.{NS}.svc.{ZONE} SRV" for i in range(min(services, 100))]
    q += [f"missing-{k}.{NS}.svc.{ZONE} A" for k in range(1000)]
    return "\n".join(q) + "\n"


def dnsperf(port, qfile, seconds, rate=None):
    args = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", str(seconds),
            "-c", "4", "-T", "1", "-t", "2"]
    if rate:
        args += ["-Q", str(rate), "-q", "500", "-v"]
    else:
        args += ["-q", "200"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Queries per second:"):
            res["qps"] = float(line.split()[-1])
        elif line.startswith("Queries lost:"):
            res["lost"] = line.split(":", 1)[1].strip()
        elif line.startswith("Response codes:"):
            res["rcodes"] = line.split(":", 1)[1].strip()
    if rate:
        lat = []
        for line in out.splitlines():
            # "> NOERROR web-1.bench.svc.cluster.local A 0.000123"
            if line.startswith("> "):
                try:
                    lat.append(float(line.split()[-1]))
                except ValueError:
                    pass
        if lat:
            lat.sort()
            res["p50_ms"] = 1000 * lat[len(lat) // 2]
            res["p99_ms"] = 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            res["mean_ms"] = 1000 * statistics.mean(lat)
    return res


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--headless", type=int, default=100)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rate", type=int, default=10000)
    a = ap.parse_args()
    for tool in ("dnsperf", "knotd", "unbound", "dig"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} missing: run scripts/deps.sh --bench")
    if not os.path.exists(CAPSTAN):
        raise SystemExit(f"{CAPSTAN} missing: cargo build --release --bin capstan")

    work = tempfile.mkdtemp(prefix="capstan-dns-bench-")
    procs = Procs()
    log = open(os.path.join(work, "log"), "w")
    try:
        cport, pport = free_port(), free_port()
        store = f"http://127.0.0.1:{cport}"
        procs.start([CAPSTAN, "server", "--data-dir", os.path.join(work, "data"),
                     "--listen-client-urls", store, "--advertise-client-urls", store,
                     "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                     "--initial-cluster", f"default=http://127.0.0.1:{pport}",
                     "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}"], log)
        time.sleep(2)
        mf = os.path.join(work, "objects.yaml")
        with open(mf, "w") as f:
            f.write(manifests(a.services, a.headless, a.endpoints))
        t = time.time()
        subprocess.run([CAPSTAN, "ctl", "--endpoints", store, "apply", "-f", mf], check=True,
                       stdout=subprocess.DEVNULL, timeout=1800)
        print(f"wrote {a.services} services and {a.headless} headless services in {time.time() - t:.1f} s",
              file=sys.stderr)
        recs = records(store)
        qfile = os.path.join(work, "queries.txt")
        with open(qfile, "w") as f:
            f.write(queries(a.services, a.headless))

        # capstan dns
        dport = free_port()
        t = time.time()
        capstan = procs.start([CAPSTAN, "dns", "--endpoints", store, "--listen", f"127.0.0.1:{dport}",
                               "--upstream", "", "--workers", "2"], log)
        wait_dns(dport, f"web-{a.services - 1}.{NS}.svc.{ZONE}")
        print(f"capstan dns answering after {time.time() - t:.1f} s", file=sys.stderr)

        # knot: the same records as a zone file
        kdir = os.path.join(work, "knot")
        os.makedirs(kdir)
        with open(os.path.join(kdir, f"{ZONE}.zone"), "w") as f:
            f.write(f"$ORIGIN {ZONE}.\n$TTL 5\n")
            for owner, t_, rdata in recs:
                if not owner.endswith("in-addr.arpa."):
                    f.write(f"{owner} 5 IN {t_} {rdata}\n")
        kport = free_port()
        with open(os.path.join(kdir, "knot.conf"), "w") as f:
            f.write(f"""server:
    rundir: "{kdir}"
    listen: 127.0.0.1@{kport}
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{kdir}"
log:
  - target: stderr
    any: warning
zone:
  - domain: {ZONE}
    file: "{kdir}/{ZONE}.zone"
    storage: "{kdir}"
    zonefile-sync: -1
    journal-content: none
""")
        knot = procs.start(["/usr/sbin/knotd", "-c", os.path.join(kdir, "knot.conf")], log)
        wait_dns(kport, f"web-0.{NS}.svc.{ZONE}")

        # unbound: local-data
        udir = os.path.join(work, "unbound")
        os.makedirs(udir)
        uport = free_port()
        with open(os.path.join(udir, "unbound.conf"), "w") as f:
            f.write(f"""server:
    interface: 127.0.0.1
    port: {uport}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{udir}"
    pidfile: "{udir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: 2
    so-reuseport: yes
    access-control: 127.0.0.0/8 allow
    do-ip6: no
    local-zone: "{ZONE}." static
""")
            for owner, t_, rdata in recs:
                if not owner.endswith("in-addr.arpa."):
                    # Single quotes: the TXT record's own quotes stay inside.
                    f.write(f"    local-data: '{owner} 5 IN {t_} {rdata}'\n")
        unbound = procs.start(["/usr/sbin/unbound", "-d", "-c", os.path.join(udir, "unbound.conf")], log)
        wait_dns(uport, f"web-0.{NS}.svc.{ZONE}")

        # Same answers? Compare a few names across the three.
        for name, t_ in [(f"web-7.{NS}.svc.{ZONE}", "A"), (f"_http._tcp.hl-3.{NS}.svc.{ZONE}", "SRV"),
                         (f"hl-3.{NS}.svc.{ZONE}", "A")]:
            seen = {}
            for who, port in [("capstan", dport), ("knot", kport), ("unbound", uport)]:
                r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+noall", "+answer",
                                    "+additional", name, t_], capture_output=True, text=True).stdout
                seen[who] = sorted(" ".join(l.split()) for l in r.splitlines())
            same = seen["capstan"] == seen["knot"]
            print(f"{name} {t_}: capstan == knot: {same}; answer+additional records: "
                  + ", ".join(f"{k} {len(v)}" for k, v in seen.items()), file=sys.stderr)

        rows = []
        for who, port, proc in [("capstan dns", dport, capstan), ("knot 3.2.6", kport, knot),
                                ("unbound 1.17.1", uport, unbound)]:
            u0, s0 = cpu_seconds(proc.pid)
            thr = dnsperf(port, qfile, a.seconds)
            u1, s1 = cpu_seconds(proc.pid)
            answered = thr.get("qps", 0) * a.seconds
            if answered:
                thr["us_per_query"] = 1e6 * ((u1 - u0) + (s1 - s0)) / answered
                thr["user_share"] = (u1 - u0) / max(1e-9, (u1 - u0) + (s1 - s0))
            lat = dnsperf(port, qfile, a.seconds, rate=a.rate)
            rows.append((who, thr, lat, rss_mib(proc.pid)))
            print(who, thr, lat, file=sys.stderr)
        base = rows[0][1].get("qps", 0)
        print(f"\nQuery file: {a.services} ClusterIP A, {a.headless} headless A ({a.endpoints} records), "
              f"{a.headless} headless SRV ({a.endpoints} + {a.endpoints} additional), 100 ClusterIP SRV, "
              f"1000 NXDOMAIN. dnsperf -c 4 -T 1; throughput -q 200 for {a.seconds} s; "
              f"latency at {a.rate} q/s for {a.seconds} s.\n")
        print("| server | qps (max) | capstan / it | CPU µs per query (user share) | p50 ms @ fixed rate | p99 ms @ fixed rate | lost | RSS MiB |")
        print("|---|---|---|---|---|---|---|---|")
        for who, thr, lat, rss in rows:
            q = thr.get("qps", 0)
            ratio = f"{base / q:.2f}x" if q else "-"
            cpu = f"{thr.get('us_per_query', float('nan')):.2f} ({100 * thr.get('user_share', float('nan')):.0f}% user)"
            print(f"| {who} | {q:,.0f} | {ratio} | {cpu} | {lat.get('p50_ms', float('nan')):.3f} | "
                  f"{lat.get('p99_ms', float('nan')):.3f} | {thr.get('lost', '?')} | {rss:.0f} |")
    finally:
        procs.stop_all()
        log.close()
        if os.environ.get("KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
