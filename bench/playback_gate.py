#!/usr/bin/env python3
"""What the playback gate costs: requests per second for the same HLS segment of two copies of one
file, one public and one gated by a JWT policy, on the release `studio` binary (SQLite, local
media directory), with wrk on loopback. Three ways in:

- public: the segment URL as is;
- grant: the gated segment's URL from its playlist, with the grant the gate wrote into it (what
  hls.js, Safari and ffmpeg send);
- jwt: the gated segment with `?jwt=` on every request (what a player sending a cookie or the
  header on every request costs).

Rounds alternate public, grant and jwt so that the machine's noise hits all three; prints each
round and the ratios gated / public of the medians.

    bench/playback_gate.py [seconds per run, default 5] [rounds, default 3] [connections, default 32]
"""
import os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import studio_bench  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
CONNECTIONS = int(sys.argv[3]) if len(sys.argv) > 3 else 32


def upload(api, key, path, body):
    requested = studio_bench.api("POST", api + "/asset/request-upload", key, body)
    with open(path, "rb") as f:
        req = urllib.request.Request(requested["url"], data=f.read(), method="PUT")
        urllib.request.urlopen(req, timeout=60).read()
    asset_id = requested["asset"]["id"]
    for _ in range(600):
        asset = studio_bench.api("GET", f"{api}/asset/{asset_id}", key)
        if asset["status"]["phase"] in ("ready", "failed"):
            assert asset["status"]["phase"] == "ready", asset
            return asset
        time.sleep(0.2)
    raise SystemExit("the asset did not become ready")


def first_uri(url):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    uri = next(line for line in text.splitlines() if line and not line.startswith("#"))
    return url[: url.rfind("/") + 1] + uri


def first_segment(master):
    return first_uri(first_uri(master))


def wrk(url):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", url],
                         check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw error responses for {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


work = tempfile.mkdtemp(prefix="studio-bench-gate-")
try:
    source = os.path.join(work, "source.mp4")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=30", "-t", "6", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "veryfast", "-g", "60", source], check=True)
    with studio_bench.server(os.path.join(work, "data")) as (api, base, _rtmp, key, _process):
        public = upload(api, key, source, {"name": "public"})
        gated = upload(api, key, source, {"name": "gated", "playbackPolicy": {"type": "jwt"}})
        signing = studio_bench.api("POST", api + "/access-control/signing-key", key, {})
        token = subprocess.run(["node", "tests/player/sign-jwt.mjs", signing["privateKey"], signing["publicKey"],
                                gated["playbackId"]], cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.strip()
        urls = {
            "public": first_segment(public["playbackUrl"]),
            "grant": first_segment(gated["playbackUrl"] + "?jwt=" + token),
        }
        urls["jwt"] = urls["grant"].split("?")[0] + "?jwt=" + token
        assert "grant=" in urls["grant"], urls
        runs = {name: [] for name in urls}
        print(f"| round | public req/s | grant req/s | jwt req/s |")
        print("|---|---|---|---|")
        for i in range(ROUNDS):
            for name, url in urls.items():
                runs[name].append(wrk(url))
            print(f"| {i + 1} | " + " | ".join(f"{runs[n][-1]:.0f}" for n in urls) + " |")
        median = {name: statistics.median(values) for name, values in runs.items()}
        print()
        print(f"grant / public = {median['grant'] / median['public']:.3f}, "
              f"jwt / public = {median['jwt'] / median['public']:.3f} (medians of {ROUNDS} rounds of {SECONDS} s, "
              f"{CONNECTIONS} connections)")
finally:
    shutil.rmtree(work, ignore_errors=True)
