#!/usr/bin/env python3
"""Randomized crash driver for coffer, in the spirit of RocksDB's db_stress.

It alternates two kinds of phases over one repository until --duration is up:

  online:  `coffer serve` (mount + registry) runs; at once and at random, a head
           writer creates, overwrites, renames and deletes files in
           /backups/t/current (each op fsynced) and seals snapshots of it
           (`coffer snapshot`); a pusher pushes blobs (monolithic and chunked)
           and manifests with unique tags whose layers are mostly real tar or
           tar+gzip (serve runs with --dedup-layers half the time, so kills
           land in the background re-store too), pulls and deletes manifests; `coffer
           gc` runs through the daemon. Then the serve process gets SIGKILL at
           a random moment (sometimes SIGTERM, which must exit 0).
  offline: concurrent `coffer backup` of freshly generated trees, `coffer put`,
           `coffer forget` and `coffer gc` (writers queue on the lock with
           --lock-wait); one or more of them get SIGKILL at random moments.

An expected-state record keeps what every operation REPORTED as complete (exit 0
with its output, HTTP 201/202, fsync returned) and, for the one operation of
each kind in flight at the kill, every outcome it may legitimately have left.
After every phase: `coffer check` and `coffer check --read-data` must be clean,
every reported snapshot restores identical to its source, every put reads back
(sha256), forgotten snapshots stay gone; and with the registry back up, every
pushed blob and manifest GETs back with the right sha256, deleted manifests stay
deleted, the head holds exactly the expected files and every sealed snapshot of
it its expected content.

Two bugs it found have their own regression tests, and the driver names them
when their signature shows up again: a manifest tag whose link comes back empty
after kill -9 (tests/fs_release_race_test.py), and a serve that cannot finish
dying after SIGKILL because one of its threads waits on its own dead mount
(tests/serve_kill9_test.sh; the driver aborts the FUSE connection first, as an
operator would have to, so the run can clean up).

Usage: torture.py --coffer BIN [--duration SECONDS] [--seed N] [--keep]
The seed is printed first; --seed N replays the same random choices (timing
still varies, so a replay hits nearby, not identical, kill points).
Exit 0 when every check held; 1 with "FAIL [torture]: ..." otherwise.
"""

import argparse
import gzip
import io
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torture_util import (Failure, abort_fuse, fsync_dir, fuse_minor, note_for, push_blob,
                          sha, sha_file)

note = note_for("torture")


class Procs:
    """The coffer processes the workers have running now (the killer's targets)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = {}  # pid -> (Popen, what)

    def add(self, p, what):
        with self.lock:
            self.running[p.pid] = (p, what)

    def remove(self, p):
        with self.lock:
            self.running.pop(p.pid, None)

    def pick(self, rng):
        with self.lock:
            items = sorted(self.running.items())
        return rng.choice(items)[1] if items else None


class Coffer:
    def __init__(self, binary, repo, procs):
        self.binary, self.repo, self.procs = binary, repo, procs
        self.base = [binary, "--repo", repo, "--passphrase-file", repo + ".pass", "-q"]

    def run(self, args, what, timeout=600, killable=True):
        """Runs coffer ARGS; returns (rc, stdout, stderr). rc -9: killed."""
        p = subprocess.Popen(self.base + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        if killable:
            self.procs.add(p, what)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise Failure(f"{what}: no exit within {timeout} s (killed); stderr {err[-500:]!r}")
        finally:
            self.procs.remove(p)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def ok(self, args, what, timeout=600):
        rc, out, err = self.run(args, what, timeout, killable=False)
        if rc != 0:
            raise Failure(f"{what}: exit {rc}, want 0; stderr: {err[-2000:]}; stdout: {out[-500:]}")
        return out


# ----------------------------------------------------------------- the expected state


class Expected:
    """What coffer reported as stored, and what the operations in flight at a kill
    may have left. Values are sha256 hex digests of contents (None: absent)."""

    def __init__(self):
        self.lock = threading.Lock()
        # offline
        self.backups = {}          # id -> (set, source dir, tree) tree: {relpath: sha}
        self.verified = set()      # backup ids restored and compared once (source removed)
        self.pending_backups = {}  # set -> tree (killed: no snapshot, or a complete one)
        self.forgotten = {}        # id -> set
        self.pending_forgets = {}  # id -> set (killed: present or gone)
        self.puts = set()          # digests reported by put
        # online: registry
        self.blobs = {}            # digest -> repo
        self.manifests = {}        # (repo, tag) -> (digest, sha of body)
        self.deleted = {}          # (repo, digest) -> tag it had
        self.pending_manifests = {}  # (repo, tag) -> digest (PUT in flight)
        self.pending_deletes = {}  # (repo, digest) -> (tag, sha of body) (DELETE in flight)
        # online: the head /backups/t/current and its snapshots
        self.head = {}             # relpath -> sha (files only)
        self.head_pending = {}     # relpath -> [possible values] (op in flight)
        self.snaps = {}            # name -> {relpath: sha}
        self.pending_snaps = {}    # name -> {relpath: sha}
        # counters for the report
        self.count = {}

    def bump(self, what, n=1):
        with self.lock:
            self.count[what] = self.count.get(what, 0) + n


# ----------------------------------------------------------------- trees


def make_tree(rng, root, pool):
    """A fresh directory tree of random files; some contents come from `pool`
    (earlier files) so backups deduplicate. Returns {relpath: sha}."""
    tree = {}
    os.makedirs(root)
    for d in range(rng.randint(1, 4)):
        sub = os.path.join(root, f"d{d}")
        os.makedirs(sub)
        for i in range(rng.randint(1, 12)):
            rel = f"d{d}/f{i}"
            if pool and rng.random() < 0.3:
                data = rng.choice(pool)
            else:
                size = rng.choice([0, 1, 100, 5000, 40000, 300000, rng.randint(0, 2 << 20)])
                data = rng.randbytes(size)
                if len(pool) < 64 and size > 1000:
                    pool.append(data)
            with open(os.path.join(root, rel), "wb") as f:
                f.write(data)
            tree[rel] = sha(data)
    return tree


def make_layer(rng, pool):
    """A real image layer: a tar (or tar+gzip) of a few files, some of whose
    contents recur across layers. Returns (media type, bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(rng.randint(1, 6)):
            data = rng.choice(pool) if pool and rng.random() < 0.4 else \
                rng.randbytes(rng.choice([10, 5000, 70000, rng.randint(0, 400000)]))
            info = tarfile.TarInfo(f"usr/lib/f{rng.getrandbits(32)}-{i}")
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if rng.random() < 0.5:
        return "application/vnd.oci.image.layer.v1.tar", raw
    return "application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(raw, mtime=0)


def read_tree(root):
    """{relpath: sha} of the regular files under root."""
    tree = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            tree[os.path.relpath(p, root)] = sha_file(p)
    return tree


def tree_diff(want, got):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}")
    if extra:
        parts.append(f"unexpected {extra[:5]}")
    if changed:
        parts.append(f"different content {changed[:5]}")
    return "; ".join(parts)


# ----------------------------------------------------------------- the registry client


class Registry:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        except (http.client.HTTPException, OSError) as e:
            raise Failure(f"{method} {path} on 127.0.0.1:{self.port}: no answer: {e!r}") from e
        finally:
            c.close()

    def push_blob(self, rng, repo, data):
        """Pushes data (monolithic or chunked); returns (final status, digest)."""
        return push_blob(lambda m, p, b, h: self.request(m, p, b, h), rng, repo, data)


# ----------------------------------------------------------------- the driver


class Torture:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.work = tempfile.mkdtemp(prefix="coffer-torture-")
        self.repo = os.path.join(self.work, "repo")
        self.mnt = os.path.join(self.work, "mnt")
        self.scratch = tempfile.mkdtemp(prefix="coffer-torture-",
                                        dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.procs = Procs()
        self.cf = Coffer(os.path.realpath(args.coffer), self.repo, self.procs)
        self.exp = Expected()
        self.pool = []
        self.serial = 0
        self.serve = None
        self.serve_log = None
        self.reg = None
        self.errors = []  # failures seen by worker threads
        self.deadline = time.monotonic() + args.duration

    def next_serial(self):
        with self.exp.lock:
            self.serial += 1
            return self.serial

    # ------------------------------------------------------------- serve

    def start_serve(self):
        os.makedirs(self.mnt, exist_ok=True)
        n = self.next_serial()
        self.serve_log = os.path.join(self.work, f"serve.{n}.log")
        log = open(self.serve_log, "wb")
        # Half the time layers are re-stored in the background (tar chunked file
        # by file plus a recipe), so kills also land in that re-store and swap.
        extra = ["--dedup-layers"] if self.rng.random() < 0.5 else []
        self.exp.bump(f"serve starts{' --dedup-layers' if extra else ''}")
        self.serve = subprocess.Popen(self.cf.base[:-1] + [
            "serve", "--mount", self.mnt, "--registry", "127.0.0.1:0"] + extra,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            text = open(self.serve_log, errors="replace").read()
            m = re.search(r"registry on http://127\.0\.0\.1:(\d+)", text)
            if m:
                break
            if self.serve.poll() is not None:
                raise Failure(f"coffer serve exited {self.serve.returncode} before serving: {text[-1500:]}")
            if time.monotonic() > deadline:
                raise Failure(f"coffer serve did not report its registry within 60 s: {text[-1500:]}")
            time.sleep(0.05)
        self.reg = Registry(int(m.group(1)))
        self.fuse_minor = fuse_minor(self.mnt)
        if self.fuse_minor is None:
            raise Failure("coffer serve reports its registry but the mount point is not mounted")
        st, _, _ = self.reg.request("GET", "/v2/")
        if st != 200:
            raise Failure(f"GET /v2/ after start: {st}")

    def kill_serve(self, how):
        p = self.serve
        if how == "TERM":
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                abort_fuse(self.fuse_minor)
                p.wait(timeout=60)
                raise Failure("coffer serve still running 120 s after SIGTERM")
            if rc != 0:
                raise Failure(f"coffer serve exited {rc} after SIGTERM, want 0: "
                              f"{open(self.serve_log, errors='replace').read()[-1500:]}")
        else:
            p.kill()
            try:
                p.wait(timeout=5)  # a SIGKILLed serve is gone in milliseconds
            except subprocess.TimeoutExpired:
                # A thread of serve was inside a request to its own mount (the
                # registry publishing a blob by rename) when the FUSE threads
                # died: the process cannot finish dying, and everything waiting
                # on the mount hangs, until the FUSE connection is aborted.
                abort_fuse(self.fuse_minor)
                p.wait(timeout=60)
                self.clear_mount()
                self.serve = None
                self.regression("serve_kill9", "coffer serve could not finish dying after SIGKILL (a "
                                "thread waited on its own dead mount; its FUSE connection was aborted)")
        self.clear_mount()
        self.serve = None

    def clear_mount(self):
        for _ in range(50):
            if fuse_minor(self.mnt) is None:
                return
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
            time.sleep(0.1)
        raise Failure(f"the dead mount {self.mnt} would not go away")

    # ------------------------------------------------------------- phases

    def worker(self, name, stop, killed, step):
        """Runs step(stop) until stop is set or it returns False. An error is a
        failure unless the kill had begun (then it is the kill's doing)."""
        try:
            while not stop.is_set():
                if step(stop) is False:
                    return
        except Failure as e:
            if not killed.is_set():
                self.errors.append(f"{name}: {e}")
        except OSError as e:
            if not killed.is_set():
                self.errors.append(f"{name}: {e!r}")
        except Exception as e:  # noqa: BLE001 - reported as a failure of the run
            self.errors.append(f"{name}: unexpected {e!r}")

    def run_workers(self, steps, duration, kill):
        stop, killed = threading.Event(), threading.Event()
        threads = [threading.Thread(target=self.worker, args=(n, stop, killed, s), daemon=True)
                   for n, s in steps]
        for t in threads:
            t.start()
        time.sleep(duration)
        # Kill first, then tell the workers to stop: whatever they were doing at
        # the kill is the operation in flight.
        kill(stop, killed)
        for t in threads:
            t.join(timeout=300)
            if t.is_alive():
                raise Failure("a worker is still blocked 300 s after the kill (hung file system call "
                              "or request)")
        if self.errors:
            raise Failure("; ".join(self.errors))

    def online_phase(self):
        self.start_serve()
        self.verify_online()
        head = os.path.join(self.mnt, "backups", "t", "current")
        if not os.path.isdir(head):
            os.mkdir(os.path.dirname(head))  # a new set; its head comes with it
            fsync_dir(os.path.join(self.mnt, "backups"))
            if not os.path.isdir(head):
                raise Failure(f"mkdir {os.path.dirname(head)} made no {head}")
        steps = [("head", lambda s: self.head_step(head, s)),
                 ("push", self.push_step), ("push2", self.push_step),
                 ("gc", self.online_gc_step)]
        how = "TERM" if self.rng.random() < 0.2 else "KILL"

        def kill(stop, killed):
            if how == "KILL":
                killed.set()
                self.kill_serve("KILL")
                stop.set()
            else:
                stop.set()  # a clean stop: let the operations finish first
        self.run_workers(steps, self.rng.uniform(0.5, 6.0), kill)
        if how == "TERM":
            self.kill_serve("TERM")
        self.exp.bump(f"serve {how}")
        note(f"online phase ended with SIG{how}")

    def offline_phase(self):
        steps = [("backup1", self.backup_step), ("backup2", self.backup_step),
                 ("put", self.put_step), ("forget", self.forget_step), ("gc", self.offline_gc_step)]
        kills = self.rng.randint(1, 3)

        def kill(stop, _):
            killed = []
            dead = set()
            for _ in range(kills):
                for _ in range(100):  # wait (up to 2 s) for a victim not yet killed
                    victim = self.procs.pick(self.rng)
                    if victim and victim[0].pid not in dead:
                        break
                    victim = None
                    time.sleep(0.02)
                if victim:
                    p, what = victim
                    p.kill()
                    dead.add(p.pid)
                    killed.append(what)
                time.sleep(self.rng.uniform(0, 1.0))
            stop.set()
            # Anything still running may finish (its outcome is then reported).
            note(f"offline phase: killed {', '.join(killed) or 'nothing (all idle)'}")
            self.exp.bump("offline kills", len(killed))
        self.run_workers(steps, self.rng.uniform(0.3, 5.0), kill)

    # ------------------------------------------------------------- online steps

    def head_step(self, head, stop):
        e = self.exp
        rng = random.Random(self.rng.random())
        files = sorted(e.head)
        op = rng.choices(["new", "overwrite", "rename", "delete", "snapshot"],
                         [5, 3, 2, 2, 1])[0]
        if op in ("overwrite", "rename", "delete") and not files:
            op = "new"
        if op == "new":
            rel = f"d{rng.randint(0, 3)}/n{self.next_serial()}"
            data = rng.randbytes(rng.choice([0, 10, 4000, 70000, rng.randint(0, 1 << 20)]))
            d = os.path.join(head, os.path.dirname(rel))
            e.head_pending = {rel: [None, sha(b""), sha(data)]}
            if not os.path.isdir(d):
                os.mkdir(d)
                fsync_dir(head)
            self.write_fsync(os.path.join(head, rel), data)
            fsync_dir(d)
            e.head[rel] = sha(data)
        elif op == "overwrite":
            rel = rng.choice(files)
            data = rng.randbytes(rng.choice([0, 10, 4000, rng.randint(0, 1 << 20)]))
            e.head_pending = {rel: [e.head[rel], sha(b""), sha(data)]}
            self.write_fsync(os.path.join(head, rel), data)
            e.head[rel] = sha(data)
        elif op == "rename":
            src = rng.choice(files)
            dst = rng.choice(files) if rng.random() < 0.3 else f"d{rng.randint(0, 3)}/r{self.next_serial()}"
            if dst == src:
                return True
            e.head_pending = {src: [e.head[src], None], dst: [e.head.get(dst), e.head[src]]}
            ddir = os.path.join(head, os.path.dirname(dst))
            if not os.path.isdir(ddir):
                os.mkdir(ddir)
                fsync_dir(head)
            os.rename(os.path.join(head, src), os.path.join(head, dst))
            fsync_dir(os.path.join(head, os.path.dirname(src)))
            fsync_dir(ddir)
            e.head[dst] = e.head.pop(src)
        elif op == "delete":
            rel = rng.choice(files)
            e.head_pending = {rel: [e.head[rel], None]}
            os.unlink(os.path.join(head, rel))
            fsync_dir(os.path.join(head, os.path.dirname(rel)))
            del e.head[rel]
        else:
            name = f"s{self.next_serial()}"
            e.pending_snaps = {name: dict(e.head)}
            rc, out, err = self.cf.run(["snapshot", "t", "--name", name], "snapshot")
            if rc != 0:
                raise Failure(f"coffer snapshot t --name {name}: exit {rc}: {err[-1000:]}")
            e.snaps[name] = e.pending_snaps.pop(name)
        e.head_pending = {}
        e.bump(f"head {op}")
        return True

    @staticmethod
    def write_fsync(path, data):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def push_step(self, stop):
        e = self.exp
        rng = random.Random(self.rng.random())
        reg = self.reg
        repo = f"r{rng.randint(0, 3)}/img"
        op = rng.choices(["blob", "manifest", "pull", "delete"], [3, 3, 2, 1])[0]
        if op == "blob" or (op in ("pull", "delete") and not e.manifests):
            data = rng.randbytes(rng.choice([0, 1, 1000, 100000, rng.randint(0, 3 << 20)]))
            st, d = reg.push_blob(rng, repo, data)
            if st != 201:
                raise Failure(f"push blob {d} to {repo}: HTTP {st}, want 201")
            with e.lock:
                e.blobs[d] = repo
            e.bump("blobs pushed")
        elif op == "manifest":
            layers = []
            for _ in range(rng.randint(1, 2)):
                if rng.random() < 0.6:
                    mt, data = make_layer(rng, self.pool)
                else:
                    mt, data = "application/vnd.oci.image.layer.v1.tar", rng.randbytes(rng.randint(0, 200000))
                st, d = reg.push_blob(rng, repo, data)
                if st != 201:
                    raise Failure(f"push layer {d} to {repo}: HTTP {st}, want 201")
                with e.lock:
                    e.blobs[d] = repo
                layers.append({"mediaType": mt, "digest": d, "size": len(data)})
            cfg = json.dumps({"architecture": "amd64", "os": "linux",
                              "n": rng.getrandbits(64)}).encode()
            st, cd = reg.push_blob(rng, repo, cfg)
            if st != 201:
                raise Failure(f"push config to {repo}: HTTP {st}")
            with e.lock:
                e.blobs[cd] = repo
            body = json.dumps({"schemaVersion": 2,
                               "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cd, "size": len(cfg)},
                               "layers": layers}).encode()
            tag = f"t{self.next_serial()}"
            md = "sha256:" + sha(body)
            with e.lock:
                e.pending_manifests[(repo, tag)] = md
            st, h, rb = reg.request("PUT", f"/v2/{repo}/manifests/{tag}", body,
                                    {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            if st != 201:
                raise Failure(f"PUT manifest {repo}:{tag}: HTTP {st} {rb[:300]!r}")
            if h.get("docker-content-digest") != md:
                raise Failure(f"PUT manifest {repo}:{tag}: Docker-Content-Digest "
                              f"{h.get('docker-content-digest')}, want {md}")
            with e.lock:
                e.manifests[(repo, tag)] = (md, sha(body))
                del e.pending_manifests[(repo, tag)]
            e.bump("manifests pushed")
        elif op == "pull":
            with e.lock:
                d, r = rng.choice(sorted(e.blobs.items()))
            st, _, body = reg.request("GET", f"/v2/{r}/blobs/{d}")
            if st != 200 or "sha256:" + sha(body) != d:
                raise Failure(f"GET blob {d} from {r}: HTTP {st}, sha256 {sha(body)}")
            e.bump("blobs pulled while running")
        else:
            with e.lock:  # claimed, so no other pusher deletes it too
                (r, tag), (md, bsha) = rng.choice(sorted(e.manifests.items()))
                del e.manifests[(r, tag)]
                e.pending_deletes[(r, md)] = (tag, bsha)
            st, _, body = reg.request("DELETE", f"/v2/{r}/manifests/{md}")
            if st != 202:
                raise Failure(f"DELETE manifest {r}@{md}: HTTP {st} {body[:300]!r}")
            with e.lock:
                e.deleted[(r, md)] = tag
                del e.pending_deletes[(r, md)]
            e.bump("manifests deleted")
        return True

    def online_gc_step(self, stop):
        if stop.wait(self.rng.uniform(0.2, 2.0)):
            return False
        rc, out, err = self.cf.run(["gc"], "gc (online)")
        if rc != 0:
            raise Failure(f"coffer gc beside the mount: exit {rc}: {err[-1000:]}")
        self.exp.bump("gc online")
        return True

    # ------------------------------------------------------------- offline steps

    def backup_step(self, stop):
        e = self.exp
        rng = random.Random(self.rng.random())
        n = self.next_serial()
        src = os.path.join(self.work, "src", f"b{n}")
        with e.lock:
            tree = make_tree(rng, src, self.pool)
        s = f"bk{n}"
        with e.lock:
            e.pending_backups[s] = (src, tree)
        rc, out, err = self.cf.run(["--lock-wait", "60", "--json", "backup", "--set", s, src],
                                   f"backup {s}")
        if rc == -9:
            return True  # killed: stays pending
        if rc != 0:
            raise Failure(f"coffer backup --set {s}: exit {rc}: {err[-1000:]}")
        sid = json.loads(out)["id"]
        with e.lock:
            del e.pending_backups[s]
            e.backups[sid] = (s, src, tree)
        e.bump("backups")
        return True

    def put_step(self, stop):
        rng = random.Random(self.rng.random())
        path = os.path.join(self.scratch, f"put{self.next_serial()}")
        data = rng.choice(self.pool) if self.pool and rng.random() < 0.3 else \
            rng.randbytes(rng.choice([0, 1, 5000, rng.randint(0, 3 << 20)]))
        with open(path, "wb") as f:
            f.write(data)
        try:
            rc, out, err = self.cf.run(["--lock-wait", "60", "put", path], "put")
        finally:
            os.unlink(path)
        if rc == -9:
            return True
        if rc != 0:
            raise Failure(f"coffer put: exit {rc}: {err[-1000:]}")
        d = out.strip()
        if d != "sha256:" + sha(data):
            raise Failure(f"coffer put printed {d!r}, want sha256:{sha(data)}")
        with self.exp.lock:
            self.exp.puts.add(d)
        self.exp.bump("puts")
        return True

    def forget_step(self, stop):
        e = self.exp
        if stop.wait(self.rng.uniform(0.1, 1.5)):
            return False
        with e.lock:
            if len(e.backups) < 3:
                return True
            # Not one a killed forget may already have removed.
            ids = sorted(set(e.backups) - set(e.pending_forgets))
            if not ids:
                return True
            sid = self.rng.choice(ids)
            s = e.backups[sid][0]
            e.pending_forgets[sid] = s
        rc, out, err = self.cf.run(["--lock-wait", "60", "forget", f"{s}@{sid}"], f"forget {s}@{sid}")
        if rc == -9:
            return True
        if rc != 0:
            raise Failure(f"coffer forget {s}@{sid}: exit {rc}: {err[-1000:]}")
        with e.lock:
            del e.pending_forgets[sid]
            del e.backups[sid]
            e.forgotten[sid] = s
        e.bump("forgets")
        return True

    def offline_gc_step(self, stop):
        if stop.wait(self.rng.uniform(0.1, 2.0)):
            return False
        rc, out, err = self.cf.run(["--lock-wait", "60", "gc"], "gc")
        if rc == -9:
            return True
        if rc != 0:
            raise Failure(f"coffer gc: exit {rc}: {err[-1000:]}")
        self.exp.bump("gc offline")
        return True

    # ------------------------------------------------------------- verification

    def verify_offline(self):
        e = self.exp
        out = self.cf.ok(["check"], "coffer check")
        if "no errors" not in out:
            raise Failure(f"coffer check: {out[-1000:]}")
        out = self.cf.ok(["check", "--read-data"], "coffer check --read-data")
        if "no errors" not in out:
            raise Failure(f"coffer check --read-data: {out[-1000:]}")
        e.bump("check --read-data clean")
        listed = {s["id"]: s["set"] for s in json.loads(self.cf.ok(["--json", "snapshots"], "snapshots"))}
        # Settle killed forgets first: their snapshots may be present or gone.
        for sid, s in list(e.pending_forgets.items()):
            if sid not in listed:  # the killed forget completed
                e.forgotten[sid] = s
                e.backups.pop(sid, None)
                e.bump("killed forgets that completed")
            del e.pending_forgets[sid]
        for sid, (s, _, _) in e.backups.items():
            if sid not in listed:
                raise Failure(f"snapshot {s}@{sid} was reported saved and is gone")
        for sid, s in e.forgotten.items():
            if sid in listed:
                raise Failure(f"snapshot {s}@{sid} was reported forgotten and is listed again")
        # A killed backup left nothing or one complete snapshot.
        known = set(e.backups) | set(e.forgotten)
        by_set = {}
        for sid, s in listed.items():
            if sid not in known and s != "t":  # set t: sealed heads, checked through the mount
                by_set.setdefault(s, []).append(sid)
        for s, ids in by_set.items():
            if s not in e.pending_backups:
                raise Failure(f"snapshots {ids} of set {s} appeared from nowhere")
            if len(ids) != 1:
                raise Failure(f"a killed backup of set {s} left {len(ids)} snapshots")
            src, tree = e.pending_backups.pop(s)
            e.backups[ids[0]] = (s, src, tree)
            e.bump("killed backups that had completed")
        for s, (src, _) in e.pending_backups.items():
            shutil.rmtree(src, ignore_errors=True)
        e.bump("killed backups that left nothing", len(e.pending_backups))
        e.pending_backups = {}
        # Restore every snapshot not yet verified, and two older ones.
        ids = sorted(e.backups)
        todo = [i for i in ids if i not in e.verified]
        old = [i for i in ids if i not in todo]
        todo += self.rng.sample(old, min(2, len(old)))
        for sid in todo:
            s, src, tree = e.backups[sid]
            target = os.path.join(self.scratch, f"restore{self.next_serial()}")
            self.cf.ok(["restore", f"{s}@{sid}", target], f"restore {s}@{sid}")
            got = read_tree(target + src)
            shutil.rmtree(target)
            diff = tree_diff(tree, got)
            if diff:
                raise Failure(f"snapshot {s}@{sid} restores differently from its source: {diff}")
            if sid not in e.verified:
                shutil.rmtree(src, ignore_errors=True)  # the tree record is enough from now on
                e.verified.add(sid)
            e.bump("restores verified")
        # Every put reads back (the new ones; a sample of the rest each time).
        puts = sorted(e.puts)
        for d in self.rng.sample(puts, min(len(puts), 12)):
            path = os.path.join(self.scratch, "cat")
            with open(path, "wb") as f:
                p = subprocess.run(self.cf.base + ["cat", d], stdout=f, stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise Failure(f"coffer cat {d} (reported stored by put): exit {p.returncode}: "
                              f"{p.stderr.decode(errors='replace')[-500:]}")
            if "sha256:" + sha_file(path) != d:
                raise Failure(f"coffer cat {d} reads back different bytes")
            os.unlink(path)
            e.bump("puts verified")

    def verify_online(self):
        """With serve running: the registry, the head and its snapshots."""
        e = self.exp
        reg = self.reg
        blobs = sorted(e.blobs.items())
        for d, r in self.rng.sample(blobs, min(len(blobs), 40)):
            st, _, body = reg.request("GET", f"/v2/{r}/blobs/{d}")
            if st != 200 or "sha256:" + sha(body) != d:
                raise Failure(f"blob {d} (pushed to {r}, 201) after restart: HTTP {st}, sha256 {sha(body)}")
            e.bump("blobs verified")
        for (r, md), (tag, bsha) in list(e.pending_deletes.items()):  # killed DELETEs: either way
            st, _, _ = reg.request("GET", f"/v2/{r}/manifests/{md}")
            if st == 404:
                e.deleted[(r, md)] = tag
            else:
                e.manifests[(r, tag)] = (md, bsha)
        e.pending_deletes = {}
        manifests = sorted(e.manifests.items())
        for (r, tag), (md, bsha) in self.rng.sample(manifests, min(len(manifests), 60)):
            st, h, body = reg.request("GET", f"/v2/{r}/manifests/{tag}",
                                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            if st == 500 and b"links to malformed ``" in body:
                self.regression("fs_release_race", f"tag {r}:{tag} (PUT answered 201) came back with "
                                f"an empty link after kill -9: {body[:200]!r}")
            if st != 200 or sha(body) != bsha:
                raise Failure(f"manifest {r}:{tag} ({md}, pushed: 201) after restart: HTTP {st}, "
                              f"sha256 {sha(body)}")
            e.bump("manifests verified")
        deleted = sorted(e.deleted.items())
        for (r, md), tag in self.rng.sample(deleted, min(len(deleted), 30)):
            st, _, _ = reg.request("GET", f"/v2/{r}/manifests/{md}")
            if st != 404:
                raise Failure(f"manifest {r}@{md} was deleted (202) and answers {st} after restart")
        for (r, tag), md in list(e.pending_manifests.items()):  # killed PUTs: either way
            st, _, body = reg.request("GET", f"/v2/{r}/manifests/{tag}")
            if st == 200:
                if "sha256:" + sha(body) != md:
                    raise Failure(f"manifest {r}:{tag} (PUT killed) reads back wrong")
                e.manifests[(r, tag)] = (md, sha(body))
            elif st != 404:
                raise Failure(f"manifest {r}:{tag} (PUT killed): HTTP {st}")
        e.pending_manifests = {}
        self.verify_head()

    @staticmethod
    def regression(name, what):
        """A failure with the signature of a fixed bug that has its own test."""
        raise Failure(f"{what} (the bug of tests/{name}_test.* is back)")

    def verify_head(self):
        e = self.exp
        head = os.path.join(self.mnt, "backups", "t", "current")
        got = read_tree(head) if os.path.isdir(head) else {}
        allowed = {k: [v] for k, v in e.head.items()}
        for k, vals in e.head_pending.items():
            allowed[k] = list(vals)
        for k in set(got) | set(allowed):
            options = allowed.get(k, [None])
            if got.get(k) not in options:
                raise Failure(f"head file {k} after the crash: {'absent' if k not in got else got[k][:12]}"
                              f", want one of {[o[:12] if o else 'absent' for o in options]} "
                              f"(the last fsynced content{' or the op in flight' if k in e.head_pending else ''})")
        e.head = got
        e.head_pending = {}
        e.bump("head checks")
        snapdir = os.path.join(self.mnt, "backups", "t", "snapshots")
        present = set(os.listdir(snapdir)) if os.path.isdir(snapdir) else set()
        for name, tree in list(e.pending_snaps.items()):
            if name in present:
                e.snaps[name] = tree
        e.pending_snaps = {}
        for name, tree in sorted(e.snaps.items()):
            if name not in present:
                raise Failure(f"snapshot t@{name} (coffer snapshot exit 0) is missing under {snapdir}")
        for name in self.rng.sample(sorted(e.snaps), min(3, len(e.snaps))):
            diff = tree_diff(e.snaps[name], read_tree(os.path.join(snapdir, name)))
            if diff:
                raise Failure(f"snapshot t@{name} differs from the head as it was sealed: {diff}")
            e.bump("head snapshots verified")

    # ------------------------------------------------------------- main loop

    def run(self):
        note(f"seed {self.seed} (replay: torture.py --seed {self.seed} --duration {self.args.duration}); "
             f"work dir {self.work}")
        pw = os.path.join(self.work, "repo.pass")
        with open(pw, "w") as f:
            f.write(f"torture {self.seed}\n")
        self.cf.ok(["init", "--kdf-memory", "8192", "--kdf-iterations", "4",
                    "--pack-size", str(4 << 20)], "coffer init")
        phases = 0
        while time.monotonic() < self.deadline:
            phases += 1
            if self.rng.random() < 0.5:
                self.online_phase()
            else:
                self.offline_phase()
            self.verify_offline()
        note("final verification")
        self.start_serve()
        self.verify_online()
        self.kill_serve("TERM")
        self.verify_offline()
        self.exp.bump("phases", phases)
        for k, v in sorted(self.exp.count.items()):
            note(f"  {k}: {v}")

    def cleanup(self, keep):
        if self.serve and self.serve.poll() is None:
            self.serve.kill()
            try:
                self.serve.wait(timeout=10)
            except subprocess.TimeoutExpired:
                abort_fuse(self.fuse_minor)
                self.serve.wait(timeout=60)
        with self.procs.lock:
            for p, _ in self.procs.running.values():
                p.kill()
        try:
            self.clear_mount()
        except Failure:
            pass
        shutil.rmtree(self.scratch, ignore_errors=True)
        if keep:
            note(f"work dir kept: {self.work}")
        elif fuse_minor(self.mnt) is None:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coffer", required=True, help="the coffer binary")
    ap.add_argument("--duration", type=float, default=180, help="seconds of phases (default 180)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    t = Torture(args)
    ok = False
    try:
        t.run()
        ok = True
    except Failure as e:
        print(f"FAIL [torture]: {e}", file=sys.stderr)
        print(f"FAIL [torture]: replay with --seed {args.seed} --duration {args.duration}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - a bug of the driver or an unexpected answer
        import traceback
        traceback.print_exc()
        print(f"FAIL [torture]: unexpected exception (above)", file=sys.stderr)
    finally:
        t.cleanup(args.keep or not ok)
    if ok:
        note(f"PASS (seed {args.seed})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
