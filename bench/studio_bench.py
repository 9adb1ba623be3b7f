"""Shared by the live benchmarks: the release `studio` binary, run on loopback with a fresh key."""
import contextlib, json, os, socket, subprocess, time, urllib.request

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/studio/target"))
# STUDIO_BENCH_BINARY runs another build (e.g. a debug binary, to compare two settings on it).
STUDIO = os.environ.get("STUDIO_BENCH_BINARY", os.path.join(TARGET, "release", "studio"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(method, url, key=None, body=None, timeout=10):
    """The response body of an HTTP request (bytes)."""
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def api(method, url, key=None, body=None):
    """The JSON response of an API call."""
    return json.loads(request(method, url, key, body) or b"null")


@contextlib.contextmanager
def server(data_dir):
    """Starts `studio serve` on free ports with data in `data_dir`; yields (API base URL, HTTP base
    URL, RTMP port, API key, server process) and stops the server afterwards."""
    key = json.loads(subprocess.check_output([STUDIO, "api-key", "create", "--name", "bench", "--data-dir", data_dir]))["key"]
    http, rtmp = free_port(), free_port()
    # Every listener on a port of its own, so a server already running here is no obstacle.
    process = subprocess.Popen([STUDIO, "serve", "--data-dir", data_dir, "--http-addr", f"127.0.0.1:{http}", "--rtmp-addr", f"127.0.0.1:{rtmp}",
                                "--srt-addr", "127.0.0.1:0", "--webrtc-addr", "127.0.0.1:0"],
                               # Every benchmark publisher connects from 127.0.0.1, many at once.
                               env={**os.environ, "STUDIO_LOG": "warn", "STUDIO_INGEST__MAX_UNAUTHORIZED_PER_ADDRESS": "100000"})
    base = f"http://127.0.0.1:{http}"
    try:
        for _ in range(100):
            try:
                request("GET", base + "/api/healthz")
                break
            except OSError:
                time.sleep(0.1)
        yield base + "/api", base, rtmp, key, process
    finally:
        process.terminate()
        process.wait()
