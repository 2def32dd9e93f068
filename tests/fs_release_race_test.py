#!/usr/bin/env python3
"""Regression test of a bug found by tests/torture.py (fixed: the daemon folds
written data at FLUSH now): a file written, renamed and closed, then made
durable by fsync of a directory, came back EMPTY after kill -9 of the daemon.

This is exactly how the registry stores manifests on the mount (registry
Storage::WriteFile: create `.tmp-<id>`, write, rename over the link, close; then
Storage::Sync: fsync of /repos, which "saves the whole tree"), and the torture
driver saw a manifest pushed with HTTP 201 answer 500 after a kill -9 and
restart ("tag t489 links to malformed ``": the tag's link file was empty).

Why (fs/src/fs_ops.cc): written data is folded into the file at RELEASE, and a
save (fsync) stores a file that still has writers as of its last fold (empty for
a new file). The kernel sends RELEASE asynchronously after close() returns, so
the FSYNCDIR that follows can be handled first; the file is then saved empty,
and if the daemon dies before its next periodic save (~200 ms), that is what
remains.

The test: 8 threads write manifests the registry's way under /repos while gc
runs and blobs are published; kill -9; remount; every link file must hold its
digest. It stops at the first loss. Before the fix: 1 loss in 288 to 1920 links
(5 to 40 rounds).

Usage: fs_release_race_test.py BIN [ROUNDS]
"""

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time


def main():
    binary, rounds = os.path.realpath(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 60
    work = tempfile.mkdtemp(prefix="coffer-release-race-")
    repo, mnt = os.path.join(work, "repo"), os.path.join(work, "mnt")
    with open(repo + ".pass", "w") as f:
        f.write("release race\n")
    base = [binary, "--repo", repo, "--passphrase-file", repo + ".pass"]
    subprocess.run(base + ["-q", "init", "--kdf-memory", "8192", "--kdf-iterations", "4"], check=True)
    os.makedirs(mnt)
    daemon = None

    def mount():
        p = subprocess.Popen(base + ["mount", mnt, "-f"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.isdir(os.path.join(mnt, "backups")):
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("FAIL [fs_release_race]: coffer mount did not come up")
            time.sleep(0.02)
        return p

    def write_file(path, data):  # registry Storage::WriteFile on the mount
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        tmp = d + "/.tmp-" + secrets.token_hex(16)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.rename(tmp, path)
        os.close(fd)

    def sync():  # registry Storage::Sync
        fd = os.open(os.path.join(mnt, "repos"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    lost, total = [], 0
    try:
        for rnd in range(rounds):
            daemon = mount()
            want, stop = {}, threading.Event()

            def pusher(t):
                for k in range(3):
                    h = secrets.token_hex(32)
                    digest = ("sha256:" + h).encode()
                    rev = f"{mnt}/repos/r{t}/img/_manifests/revisions/sha256/{h}"
                    write_file(rev + "/type", b"application/vnd.oci.image.manifest.v1+json")
                    write_file(rev + "/link", digest)
                    tag = f"{mnt}/repos/r{t}/img/_manifests/tags/t{rnd}_{k}/current/link"
                    write_file(tag, digest)
                    sync()  # returned: the registry answers 201 now
                    want[rev + "/link"] = digest
                    want[tag] = digest

            def gc():
                while not stop.is_set():
                    subprocess.run(base + ["-q", "gc"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)

            def blobs():
                try:
                    while not stop.is_set():
                        data = os.urandom(2 << 20)
                        u = f"{mnt}/uploads/{secrets.token_hex(16)}"
                        with open(u, "wb") as f:
                            f.write(data)
                        os.rename(u, f"{mnt}/blobs/sha256/{hashlib.sha256(data).hexdigest()}")
                except OSError:
                    pass  # the daemon was killed

            bg = [threading.Thread(target=gc), threading.Thread(target=blobs)]
            for t in bg:
                t.start()
            ts = [threading.Thread(target=pusher, args=(t,)) for t in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            stop.set()
            daemon.kill()
            daemon.wait()
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
            for t in bg:
                t.join()
            daemon = mount()
            for f, data in sorted(want.items()):
                total += 1
                got = open(f, "rb").read() if os.path.exists(f) else None
                if got != data:
                    lost.append(f"round {rnd}: {f[len(mnt):]} holds {got!r} after kill -9, "
                                f"want {data.decode()}")
            daemon.terminate()
            daemon.wait()
            if lost:
                break
    finally:
        if daemon and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    if lost:
        print("\n".join(lost))
        print(f"FAIL [fs_release_race]: {len(lost)} of {total} files made durable by fsync of "
              f"/repos were lost or empty after kill -9 of the daemon")
        sys.exit(1)
    print(f"PASS [fs_release_race]: {total} files in {rounds} rounds intact after kill -9")


if __name__ == "__main__":
    main()
