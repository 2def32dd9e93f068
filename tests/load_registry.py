#!/usr/bin/env python3
"""Load and abuse test of `coffer serve`'s registry (loopback only).

1. Load: 50 pulling and 10 pushing clients for --seconds (default 60) against one
   `coffer serve`. Pullers GET blobs whole and by Range, and manifests by tag,
   and verify every byte (sha256 of the blob, the exact range, the manifest's
   digest). Pushers push blobs (monolithic, or POST + PATCH pieces + PUT) and a
   manifest naming them under a new tag, then read both back; what they push
   joins the pullers' pool. Every answer must be the expected status: zero errors.
2. Slow clients: 200 connections that send a request head one byte at a time
   (slowloris) while a normal client keeps being served, each request answered.
3. Oversized bodies: a manifest PUT announcing 1 GiB gets 413 without the body
   being sent; a chunked manifest body of 64 MiB gets 413 and the server's peak
   RSS does not grow by the body's size (it is not buffered).
Reports the request counts and the peak RSS (VmHWM, summed over `coffer serve`
and its registry child process).

Usage: load_registry.py --coffer BIN [--seconds 60] [--pullers 50] [--pushers 10]
Exit 0 when every check held; 1 with "FAIL [load_registry]: ..." otherwise.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torture_util import Failure, note_for, proc_status, push_blob, sha

note = note_for("load_registry")


def descendants(pid):
    """pid and every process below it (coffer serve runs the registry in a child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in os.listdir(f"/proc/{p}/task"):
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return out


def serve_status(pid, field):
    """Σ of a /proc status field (VmHWM, VmRSS in KiB; Threads) over serve's processes."""
    return sum(proc_status(p, field) for p in descendants(pid))


class Client:
    """One keep-alive connection, reopened after the server closes it."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        # No retry: the server keeps idle connections for 120 s, far longer than
        # any pause here, so every dropped connection is an error.
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError) as e:
            self.close()
            raise Failure(f"{method} {path}: no answer: {e!r}") from e
        if (r.getheader("Connection") or "").lower() == "close":
            self.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


class Load:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = tempfile.mkdtemp(prefix="coffer-load-")
        self.repo = os.path.join(self.work, "repo")
        self.mnt = os.path.join(self.work, "mnt")
        self.base = [os.path.realpath(args.coffer), "--repo", self.repo,
                     "--passphrase-file", self.repo + ".pass"]
        self.serve = None
        self.lock = threading.Lock()
        self.blobs = []      # (repo, digest, size)
        self.manifests = []  # (repo, tag, digest)
        self.counts = {}
        self.errors = []
        self.serial = 0

    def bump(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def error(self, msg):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(msg)
            self.counts["errors"] = self.counts.get("errors", 0) + 1

    # ------------------------------------------------------------- serve

    def start(self):
        with open(self.repo + ".pass", "w") as f:
            f.write("load test passphrase\n")
        subprocess.run(self.base + ["-q", "init", "--kdf-memory", "8192", "--kdf-iterations", "4"],
                       check=True, stdout=subprocess.DEVNULL)
        os.makedirs(self.mnt)
        self.log = os.path.join(self.work, "serve.log")
        with open(self.log, "wb") as log:
            self.serve = subprocess.Popen(self.base + ["serve", "--mount", self.mnt, "--registry",
                                                       "127.0.0.1:0"],
                                          stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            m = re.search(r"registry on http://127\.0\.0\.1:(\d+)", open(self.log).read())
            if m:
                break
            if self.serve.poll() is not None or time.monotonic() > deadline:
                raise Failure(f"coffer serve did not start: {open(self.log).read()[-1000:]}")
            time.sleep(0.05)
        self.port = int(m.group(1))
        note(f"coffer serve pid {self.serve.pid} on 127.0.0.1:{self.port}, work dir {self.work}")

    def stop(self):
        if not self.serve:
            return
        self.serve.send_signal(signal.SIGTERM)
        try:
            rc = self.serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.serve.kill()
            self.serve.wait()
            raise Failure("coffer serve still running 120 s after SIGTERM")
        self.serve = None
        if rc != 0:
            raise Failure(f"coffer serve exited {rc} after SIGTERM: {open(self.log).read()[-1000:]}")

    def cleanup(self):
        if self.serve and self.serve.poll() is None:
            self.serve.kill()
            self.serve.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt])
        if not os.path.ismount(self.mnt):
            shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------- pushing and pulling

    def push_blob(self, c, rng, repo, data):
        st, d = push_blob(c.request, rng, repo, data)
        if st != 201:
            raise Failure(f"push blob {d} to {repo}: HTTP {st}, want 201")
        self.bump("blobs pushed")
        return d

    def push_image(self, c, rng, repo):
        layers = []
        for _ in range(rng.randint(1, 3)):
            data = rng.randbytes(rng.choice([1000, 50000, 300000, rng.randint(0, 4 << 20)]))
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": self.push_blob(c, rng, repo, data), "size": len(data)})
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "r": rng.getrandbits(64)}).encode()
        cd = self.push_blob(c, rng, repo, cfg)
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cd, "size": len(cfg)},
                           "layers": layers}).encode()
        with self.lock:
            self.serial += 1
            tag = f"v{self.serial}"
        st, h, rb = c.request("PUT", f"/v2/{repo}/manifests/{tag}", body,
                              {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        md = "sha256:" + sha(body)
        if st != 201 or h.get("docker-content-digest") != md:
            raise Failure(f"PUT manifest {repo}:{tag}: {st} {h.get('docker-content-digest')} {rb[:200]!r}")
        self.bump("manifests pushed")
        # Read back what was just pushed before others may pull it.
        st, _, got = c.request("GET", f"/v2/{repo}/manifests/{tag}",
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        if st != 200 or got != body:
            raise Failure(f"GET manifest {repo}:{tag} right after its push: {st}")
        with self.lock:
            for l in layers:
                self.blobs.append((repo, l["digest"], l["size"]))
            self.blobs.append((repo, cd, len(cfg)))
            self.manifests.append((repo, tag, md))

    def pull_one(self, c, rng):
        with self.lock:
            kind = rng.random()
            if kind < 0.2 and self.manifests:
                repo, tag, md = rng.choice(self.manifests)
                blob = None
            else:
                repo, d, size = rng.choice(self.blobs)
                blob = (d, size)
        if blob is None:
            st, h, body = c.request("GET", f"/v2/{repo}/manifests/{tag}",
                                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            if st != 200 or "sha256:" + sha(body) != md:
                raise Failure(f"GET manifest {repo}:{tag}: {st}, sha256 {sha(body)} want {md}")
            self.bump("manifest pulls verified")
            return
        d, size = blob
        if size > 2 and rng.random() < 0.3:
            first = rng.randrange(size)
            last = rng.randrange(first, size)
            st, _, body = c.request("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": f"bytes={first}-{last}"})
            if st != 206 or len(body) != last - first + 1:
                raise Failure(f"GET {d} bytes={first}-{last}: {st}, {len(body)} bytes")
            # Verify the range against the whole blob from a second request.
            st, _, whole = c.request("GET", f"/v2/{repo}/blobs/{d}")
            if st != 200 or "sha256:" + sha(whole) != d or whole[first:last + 1] != body:
                raise Failure(f"GET {d} bytes={first}-{last}: wrong bytes")
            self.bump("range pulls verified")
            return
        st, _, body = c.request("GET", f"/v2/{repo}/blobs/{d}")
        if st != 200 or "sha256:" + sha(body) != d:
            raise Failure(f"GET blob {d} from {repo}: {st}, sha256 {sha(body)}")
        self.bump("blob pulls verified")
        self.bump("bytes pulled", len(body))

    def run_clients(self, seconds):
        stop = threading.Event()

        def loop(name, seed, fn):
            rng = random.Random(seed)
            c = Client(self.port)
            while not stop.is_set():
                try:
                    fn(c, rng)
                except Failure as e:
                    self.error(f"{name}: {e}")
                except Exception as e:  # noqa: BLE001 - counted as an error of the run
                    self.error(f"{name}: {e!r}")
            c.close()

        threads = []
        for i in range(self.args.pushers):
            threads.append(threading.Thread(
                target=loop, args=(f"pusher{i}", self.rng.random(),
                                   lambda c, r, i=i: self.push_image(c, r, f"load/p{i % 5}")), daemon=True))
        for i in range(self.args.pullers):
            threads.append(threading.Thread(target=loop, args=(f"puller{i}", self.rng.random(),
                                                               self.pull_one), daemon=True))
        rss_max = 0
        for t in threads:
            t.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(1)
            rss_max = max(rss_max, serve_status(self.serve.pid, "VmRSS"))
            if self.serve.poll() is not None:
                raise Failure(f"coffer serve died under load: {open(self.log).read()[-1000:]}")
        stop.set()
        for t in threads:
            t.join(timeout=300)
            if t.is_alive():
                raise Failure("a client is still waiting for an answer 300 s after the load ended")
        return rss_max

    # ------------------------------------------------------------- abuse

    def slow_clients(self, n=200):
        """n connections dribble a request head; a normal client is still served."""
        socks = []
        head = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            socks.append(s)
        threads_before = serve_status(self.serve.pid, "Threads")
        c = Client(self.port)
        served = 0
        for i in range(len(head)):
            for s in socks:
                s.send(head[i:i + 1])
            st, _, body = c.request("GET", "/v2/")
            if st != 200:
                raise Failure(f"GET /v2/ beside {n} slow clients: {st}")
            with self.lock:
                repo, d, size = self.rng.choice(self.blobs)
            st, _, body = c.request("GET", f"/v2/{repo}/blobs/{d}")
            if st != 200 or "sha256:" + sha(body) != d:
                raise Failure(f"GET blob beside {n} slow clients: {st}")
            served += 2
            time.sleep(0.05)
        threads_after = serve_status(self.serve.pid, "Threads")
        # Finish the slow heads: each must be answered too.
        answered = 0
        for s in socks:
            s.send(b"\r\n\r\n")
        for s in socks:
            data = s.recv(4096)
            if data.startswith(b"HTTP/1.1 200"):
                answered += 1
            s.close()
        c.close()
        if answered != n:
            raise Failure(f"only {answered} of {n} slow clients got 200 once their head was complete")
        if threads_after > threads_before + 4:
            raise Failure(f"slow clients cost threads: {threads_before} -> {threads_after}")
        note(f"slow clients: {n} connections sending their head a byte at a time; {served} requests "
             f"of another client served meanwhile; all {n} answered; server threads "
             f"{threads_before} -> {threads_after}")
        self.bump("slow-client side requests", served)

    def oversized(self):
        # Announced 1 GiB: the answer comes after the head; no body is sent.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(b"PUT /v2/load/big/manifests/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                  b"Content-Length: 1073741824\r\n\r\n")
        data = s.recv(4096)
        s.close()
        if not data.startswith(b"HTTP/1.1 413"):
            raise Failure(f"manifest PUT announcing 1 GiB: {data[:100]!r}, want 413 before the body")
        # Chunked, 64 MiB: 413, and the server's peak RSS does not grow by it.
        hwm_before = serve_status(self.serve.pid, "VmHWM")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        s.sendall(b"PUT /v2/load/big/manifests/y HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
        sent = 0
        try:
            for _ in range(64):
                s.sendall(piece)
                sent += 1
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: fine
        s.settimeout(60)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        s.close()
        hwm_after = serve_status(self.serve.pid, "VmHWM")
        if not data.startswith(b"HTTP/1.1 413"):
            raise Failure(f"64 MiB chunked manifest: {data[:100]!r}, want 413")
        if hwm_after - hwm_before > 32 << 10:
            raise Failure(f"64 MiB chunked manifest: peak RSS grew {hwm_before} -> {hwm_after} KiB")
        note(f"oversized manifests: 1 GiB announced -> 413 before any body; 64 MiB chunked "
             f"({sent} MiB sent before the close) -> 413, peak RSS {hwm_before} -> {hwm_after} KiB")

    # ------------------------------------------------------------- main

    def run(self):
        self.start()
        c = Client(self.port)
        rng = random.Random(self.rng.random())
        for i in range(8):  # a pool to pull from before the pushers add theirs
            self.push_image(c, rng, f"load/p{i % 5}")
        c.close()
        note(f"pool: {len(self.blobs)} blobs, {len(self.manifests)} manifests; "
             f"{self.args.pullers} pullers + {self.args.pushers} pushers for {self.args.seconds} s")
        rss_max = self.run_clients(self.args.seconds)
        hwm = serve_status(self.serve.pid, "VmHWM")
        for k, v in sorted(self.counts.items()):
            note(f"  {k}: {v}")
        if self.errors:
            raise Failure(f"{self.counts.get('errors')} errors under load, first: " + " | ".join(self.errors[:5]))
        note(f"zero errors; coffer serve peak RSS (VmHWM) {hwm / 1024:.1f} MiB, "
             f"highest sampled VmRSS {rss_max / 1024:.1f} MiB")
        self.slow_clients()
        self.oversized()
        note(f"final peak RSS (VmHWM) {serve_status(self.serve.pid, 'VmHWM') / 1024:.1f} MiB")
        self.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coffer", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--pullers", type=int, default=50)
    ap.add_argument("--pushers", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    note(f"seed {args.seed}")
    t = Load(args)
    ok = False
    try:
        t.run()
        ok = True
    except Failure as e:
        print(f"FAIL [load_registry]: {e}", file=sys.stderr)
    except Exception:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        print("FAIL [load_registry]: unexpected exception (above)", file=sys.stderr)
    finally:
        t.cleanup()
    if ok:
        note("PASS")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
