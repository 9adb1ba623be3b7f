#!/usr/bin/env python3
"""Live density: N concurrent 360p RTMP publishers on streams with `profiles: []` (source only),
each for D seconds, on one server. Counts streams whose session lost media (recorded duration short
of what was published) and measures the server's resident memory per stream.

    cargo build --release -p studio-api --bin studio -p studio-tests --bin rtmp-load
    bench/live_density.py [streams, default 100] [seconds, default 30] [starts per second, default 50]

One pre-encoded clip (640x360 30 fps H.264 at 800 kb/s, 2 s GOP, and AAC) is replayed in real time
to every stream by `rtmp-load`, one light process (tests/load/rtmp_load.rs): one ffmpeg process per
stream would take the 2 cores from the server at a few hundred streams. Publishers start at a
steady rate (50 a second by default) rather than in the same instant. Results: bench/README.md.
"""
import json, os, subprocess, sys, tempfile, time

from studio_bench import TARGET, api, server

RTMP_LOAD = os.path.join(TARGET, "release", "rtmp-load")

count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
starts_per_second = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


with tempfile.TemporaryDirectory() as work:
    clip = os.path.join(work, "clip.flv")
    subprocess.check_call(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
                           "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264",
                           "-preset", "veryfast", "-b:v", "800k", "-g", "60", "-c:a", "aac", "-f", "flv", clip])
    with server(os.path.join(work, "data")) as (base, _, rtmp, key, process):
        streams = [api("POST", base + "/stream", key, {"name": f"s{i}", "profiles": []}) for i in range(count)]
        idle_rss = rss_mib(process.pid)
        cpu_before = cpu_seconds(process.pid)
        started = time.monotonic()
        load = subprocess.Popen([RTMP_LOAD, clip, f"127.0.0.1:{rtmp}", str(starts_per_second)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        load.stdin.write("".join(s["streamKey"] + "\n" for s in streams))
        load.stdin.close()
        peak_rss = idle_rss
        while load.poll() is None:
            peak_rss = max(peak_rss, rss_mib(process.pid))
            time.sleep(0.5)
        wall = time.monotonic() - started
        cpu = cpu_seconds(process.pid) - cpu_before
        report = json.loads(load.stdout.read())
        failed_encoders = report["failed"]
        time.sleep(2)
        short, durations = 0, []
        for s in streams:
            sessions = api("GET", f"{base}/stream/{s['id']}/sessions", key)
            got = sum(x["sourceSegmentsDuration"] for x in sessions)
            durations.append(got)
            if got < seconds - 0.5:
                short += 1
        print(json.dumps({
            "streams": count,
            "seconds_each": seconds,
            "starts_per_second": starts_per_second,
            "encoders_failed": failed_encoders,
            "failures": report["failures"],
            "streams_short_of_media": short,
            "recorded_s": {"min": round(min(durations), 2), "max": round(max(durations), 2)},
            "server_rss_mib": {"idle": round(idle_rss, 1), "peak": round(peak_rss, 1),
                               "per_stream": round((peak_rss - idle_rss) / count, 2)},
            "server_cpu_cores": round(cpu / wall, 2),
        }, indent=1))
