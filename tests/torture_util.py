"""Helpers shared by the torture harness: tests/torture.py, tests/load_registry.py
and tests/fs_release_race_test.py. Imported, not run."""

import hashlib
import os
import subprocess
import time

_START = time.monotonic()


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


def note_for(name):
    """A note(msg) function that prints "[name 12.3s] msg" (time since start)."""
    def note(msg):
        print(f"[{name} {time.monotonic() - _START:6.1f}s] {msg}", flush=True)
    return note


def sha(data):
    return hashlib.sha256(data).hexdigest()


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def proc_status(pid, field):
    """A numeric field of /proc/PID/status (VmHWM and VmRSS are in KiB; Threads)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise Failure(f"/proc/{pid}/status has no {field}")


def fuse_minor(mnt):
    """The FUSE connection number of the mount at mnt (None: not mounted there).
    (os.path.ismount cannot tell: stat of a dead FUSE mount fails.)"""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == mnt and fields[sep + 1].startswith("fuse"):
                found = fields[2].split(":")[1]
    return found


def abort_fuse(minor):
    """Aborts a FUSE connection: every request waiting on it fails (ENOTCONN)."""
    path = f"/sys/fs/fuse/connections/{minor}/abort"
    if not os.path.exists(path):
        subprocess.run(["mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections"],
                       stderr=subprocess.DEVNULL)
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError:
        pass  # the connection is gone already


def push_blob(request, rng, repo, data):
    """Pushes data to repo, at random monolithically (POST ?digest=) or as POST +
    PATCH pieces + PUT ?digest=. request(method, path, body, headers) returns
    (status, lower-cased headers, body). Returns (final status, digest); a wrong
    status before the final one raises Failure."""
    d = "sha256:" + sha(data)
    if rng.random() < 0.5:
        st, _, _ = request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                           {"Content-Type": "application/octet-stream"})
        return st, d
    st, h, body = request("POST", f"/v2/{repo}/blobs/uploads/", b"", {})
    if st != 202:
        raise Failure(f"POST /v2/{repo}/blobs/uploads/: {st} {body[:300]!r}")
    loc, pos = h["location"], 0
    while pos < len(data):
        piece = data[pos:pos + rng.randint(1, len(data) - pos)]
        st, h, body = request("PATCH", loc, piece, {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{pos}-{pos + len(piece) - 1}"})
        if st != 202:
            raise Failure(f"PATCH {loc} at {pos}: {st} {body[:300]!r}")
        loc, pos = h["location"], pos + len(piece)
    st, _, _ = request("PUT", loc + ("&" if "?" in loc else "?") + f"digest={d}", b"", {})
    return st, d
