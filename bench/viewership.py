#!/usr/bin/env python3
"""Viewership costs, on the release `studio` binary (SQLite, local media directory):

1. Counting: HLS segment requests per second (wrk on loopback, one public segment, every request a
   new view hit) with view counting on and off (`STUDIO_VIEWERSHIP__COUNT_VIEWS`), rounds
   alternating, the server restarted for each; prints the ratio on / off of the medians.
2. Querying: 1,000 playback IDs x 30 days of hourly rollups (720,000 rows, and their per-project
   sums, written straight into the database), then `GET /api/data/views/query` for the 30 days in hourly buckets (all playback IDs
   summed), and for one playback ID; prints the median and worst of 20 calls.

    bench/viewership.py [seconds per wrk run, default 5] [rounds, default 3] [connections, default 32]
"""
import os, re, shutil, sqlite3, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import studio_bench  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
CONNECTIONS = int(sys.argv[3]) if len(sys.argv) > 3 else 32
PLAYBACK_IDS = 1000
HOURS = 30 * 24


def wrk(url):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", url],
                         check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw error responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def first_uri(url):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    uri = next(line for line in text.splitlines() if line and not line.startswith("#"))
    return url[: url.rfind("/") + 1] + uri


def timed(url, key):
    started = time.perf_counter()
    body = studio_bench.request("GET", url, key)
    return (time.perf_counter() - started) * 1000, body


work = tempfile.mkdtemp(prefix="studio-bench-views-")
data = os.path.join(work, "data")
try:
    source = os.path.join(work, "source.mp4")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=30", "-t", "6", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "veryfast", "-g", "60", source], check=True)
    # The asset, made once; its segment's path is the same for every server started on `data`.
    with studio_bench.server(data) as (api, base, _rtmp, key, _process):
        requested = studio_bench.api("POST", api + "/asset/request-upload", key, {"name": "watched"})
        with open(source, "rb") as f:
            urllib.request.urlopen(urllib.request.Request(requested["url"], data=f.read(), method="PUT"), timeout=60)
        for _ in range(600):
            asset = studio_bench.api("GET", f"{api}/asset/{requested['asset']['id']}", key)
            if asset["status"]["phase"] == "ready":
                break
            time.sleep(0.2)
        segment_path = first_uri(first_uri(asset["playbackUrl"]))[len(base):]

    runs = {"on": [], "off": []}
    print("| round | counting on req/s | counting off req/s |")
    print("|---|---|---|")
    for i in range(ROUNDS):
        for mode in ("on", "off"):
            os.environ["STUDIO_VIEWERSHIP__COUNT_VIEWS"] = "true" if mode == "on" else "false"
            with studio_bench.server(data) as (_api, base, _rtmp, _key, _process):
                runs[mode].append(wrk(base + segment_path))
        print(f"| {i + 1} | {runs['on'][-1]:.0f} | {runs['off'][-1]:.0f} |")
    os.environ.pop("STUDIO_VIEWERSHIP__COUNT_VIEWS", None)
    print(f"\non / off = {statistics.median(runs['on']) / statistics.median(runs['off']):.3f} "
          f"(medians of {ROUNDS} rounds of {SECONDS} s, {CONNECTIONS} connections)\n")

    # Rollups of 1,000 playback IDs over 30 days, written while no server runs.
    db = sqlite3.connect(os.path.join(data, "studio.db"))
    (project_id,) = db.execute("SELECT project_id FROM assets LIMIT 1").fetchone()
    end = int(time.time() * 1000) // 3_600_000 * 3_600_000
    start = end - HOURS * 3_600_000
    rows = ((project_id, f"pid{p:04d}", start + h * 3_600_000, "", "desktop", "Chrome", "Linux", "", 3, 90_000)
            for p in range(PLAYBACK_IDS) for h in range(HOURS))
    db.executemany("INSERT INTO view_rollups (project_id, playback_id, hour, creator_id, device_type, browser, os, "
                   "country, view_count, playtime_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    # The per-project sums the collector writes beside them.
    db.execute("INSERT INTO view_rollups_project (project_id, hour, creator_id, device_type, browser, os, country, "
               "view_count, playtime_ms) SELECT project_id, hour, creator_id, device_type, browser, os, country, "
               "SUM(view_count), SUM(playtime_ms) FROM view_rollups WHERE project_id = ? AND hour >= ? AND hour < ? "
               "GROUP BY project_id, hour, creator_id, device_type, browser, os, country", (project_id, start, end))
    db.commit()
    db.close()
    with studio_bench.server(data) as (api, _base, _rtmp, key, _process):
        print(f"| query over {PLAYBACK_IDS} playback IDs x {HOURS} hours | median ms | worst ms | rows |")
        print("|---|---|---|---|")
        for name, query in [
            ("30 days hourly, all summed", f"from={start}&to={end}&timeStep=hour"),
            ("30 days daily, all summed", f"from={start}&to={end}&timeStep=day"),
            ("30 days hourly, one playback ID", f"from={start}&to={end}&timeStep=hour&playbackId=pid0500"),
        ]:
            times = []
            for _ in range(20):
                ms, body = timed(f"{api}/data/views/query?{query}", key)
                times.append(ms)
            count = body.count(b"viewCount")
            print(f"| {name} | {statistics.median(times):.1f} | {max(times):.1f} | {count} |")
finally:
    shutil.rmtree(work, ignore_errors=True)
