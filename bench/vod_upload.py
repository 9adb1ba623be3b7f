#!/usr/bin/env python3
"""VOD upload throughput and memory: a file of SIZE_MIB (default 1024) uploaded on loopback to the
release `studio` binary (local media directory), by direct PUT and by TUS (one PATCH streaming the
whole file, as tus-js-client does with its default chunk size), against the same machine's durable disk
write speed (the same bytes written by `dd` with direct I/O into the same directory and synced: the server
syncs what it stores before it says it has it). Reports each upload's throughput, its ratio to the disk's, and how far the server's RSS
rose above where it was before the upload, in 3 rounds (each compared with its own disk write:
the machine is noisy), and the median ratios.

The server runs with tasks.run=false: what is measured is receiving and storing the file, not
processing it (the file is random bytes, not media).

    bench/vod_upload.py [SIZE_MIB]
"""
import http.client, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import studio_bench  # noqa: E402

SIZE_MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
BLOCK = 1 << 20
RUNS = 3


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


def settle():
    """Lets the disk finish what earlier measurements left (write-back, journal) before the
    next one starts."""
    os.sync()
    time.sleep(3)


def disk_write(path):
    """Seconds for the disk to take the file's bytes durably: `dd` writing them into `path` (a
    file in the server's data directory) in 1 MiB blocks with direct I/O, then syncing. This is
    what the disk itself sustains; buffered writes synced at the end come out slower here."""
    started = time.monotonic()
    subprocess.run(["dd", f"if={SOURCE}", f"of={path}", "bs=1M", "oflag=direct", "conv=fsync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        # The machine is noisy (and its disk slows down under sustained writes): each round
        # measures the disk, then each upload, and compares them within the round; the round
        # with the median direct PUT ratio is shown.
        rounds = []
        for _ in range(RUNS):
            settle()
            disk = disk_write(os.path.join(data, "disk-baseline.bin"))
            row = {"disk": disk}
            for name in ["direct PUT", "TUS (one PATCH)"]:
                requested = studio_bench.api("POST", api + "/asset/request-upload", key, {"name": name})
                settle()
                before = rss_mib(process.pid)
                peak = Peak(process.pid)
                if name == "direct PUT":
                    status, _, elapsed = send(requested["url"], "PUT", {"Content-Type": "application/octet-stream"})
                    assert status == 200, status
                else:
                    elapsed = tus_upload(requested["tusEndpoint"])
                row[name] = (elapsed, peak.stop() - before)
            rounds.append(row)
        mib = SIZE_MIB
        print(f"| round | disk write | direct PUT | / disk | RSS growth | TUS | / disk | RSS growth |")
        print("|---|---|---|---|---|---|---|---|")
        for i, row in enumerate(rounds):
            disk = row["disk"]
            cells = [f"{mib / disk:.0f} MiB/s"]
            for name in ["direct PUT", "TUS (one PATCH)"]:
                elapsed, growth = row[name]
                cells += [f"{mib / elapsed:.0f} MiB/s", f"{disk / elapsed:.2f}", f"{growth:.1f} MiB"]
            print(f"| {i + 1} | " + " | ".join(cells) + " |")
        for name in ["direct PUT", "TUS (one PATCH)"]:
            ratios = sorted(row["disk"] / row[name][0] for row in rounds)
            print(f"median {name} / disk: {ratios[len(ratios) // 2]:.2f}")
finally:
    shutil.rmtree(work, ignore_errors=True)
