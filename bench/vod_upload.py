#!/usr/bin/env python3
"""VOD upload throughput and memory: a file of SIZE_MIB (default 1024) uploaded on loopback to the
release `studio` binary (local media directory), by direct PUT and by TUS (one PATCH streaming the
whole file, as tus-js-client does with its default chunk size), against the same machine's durable disk
write speed (the same bytes written to a file in the same directory, in 1 MiB blocks, then
synced to disk: the server syncs what it stores before it says it has it). Reports each upload's throughput, its ratio to the disk's, and how far the server's RSS
rose above where it was before the upload.

The server runs with tasks.run=false: what is measured is receiving and storing the file, not
processing it (the file is random bytes, not media).

    bench/vod_upload.py [SIZE_MIB]
"""
import http.client, json, os, shutil, sys, tempfile, threading, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import studio_bench  # noqa: E402

SIZE_MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
BLOCK = 1 << 20


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples a process's RSS every 20 ms while alive."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, rss_mib(pid), True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def disk_write(path):
    """Seconds to write the file's bytes into `path` (a file in the server's data directory) and
    sync them to disk."""
    started = time.monotonic()
    with open(SOURCE, "rb") as src, open(path, "wb") as dst:
        while chunk := src.read(BLOCK):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.monotonic() - started
    os.remove(path)
    return elapsed


def send(url, method, headers):
    """Streams the file in one request; returns (status, headers, seconds)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600, blocksize=BLOCK)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    with open(SOURCE, "rb") as body:
        conn.request(method, target, body=body, headers={"Content-Length": str(SIZE_MIB * BLOCK), **headers})
        response = conn.getresponse()
        response.read()
    elapsed = time.monotonic() - started
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, elapsed


def tus_upload(endpoint):
    parts = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", parts.path + "?" + parts.query, headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(SIZE_MIB * BLOCK)})
    created = conn.getresponse()
    created.read()
    assert created.status == 201, created.status
    location = created.getheader("Location")
    status, headers, elapsed = send(location, "PATCH", {"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                                        "Content-Type": "application/offset+octet-stream"})
    assert status == 204, status
    assert int(headers["upload-offset"]) == SIZE_MIB * BLOCK, headers
    return elapsed


work = tempfile.mkdtemp(prefix="studio-bench-vod-")
SOURCE = os.path.join(work, "source.bin")
try:
    with open(SOURCE, "wb") as f:
        chunk = os.urandom(BLOCK)
        for _ in range(SIZE_MIB):
            f.write(chunk)
    data = os.path.join(work, "data")
    os.environ["STUDIO_TASKS__RUN"] = "false"
    os.environ["STUDIO_VOD__MAX_UPLOAD_BYTES"] = str(SIZE_MIB * BLOCK * 2)
    with studio_bench.server(data) as (api, _base, _rtmp, key, process):
        disk = min(disk_write(os.path.join(data, "disk-baseline.bin")) for _ in range(2))
        rows = []
        for name in ["direct PUT", "TUS (one PATCH)"]:
            requested = studio_bench.api("POST", api + "/asset/request-upload", key, {"name": name})
            before = rss_mib(process.pid)
            peak = Peak(process.pid)
            if name == "direct PUT":
                status, _, elapsed = send(requested["url"], "PUT", {"Content-Type": "application/octet-stream"})
                assert status == 200, status
            else:
                elapsed = tus_upload(requested["tusEndpoint"])
            growth = peak.stop() - before
            rows.append((name, elapsed, growth))
        mib = SIZE_MIB
        print(f"| what | {mib} MiB in | throughput | / disk write | server RSS growth |")
        print("|---|---|---|---|---|")
        print(f"| disk write (same directory) | {disk:.2f} s | {mib / disk:.0f} MiB/s | 1.00 | - |")
        for name, elapsed, growth in rows:
            print(f"| {name} | {elapsed:.2f} s | {mib / elapsed:.0f} MiB/s | {disk / elapsed:.2f} | {growth:.1f} MiB |")
finally:
    shutil.rmtree(work, ignore_errors=True)
