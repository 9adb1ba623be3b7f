#!/usr/bin/env python3
"""Live density: N concurrent 360p RTMP publishers on streams with `profiles: []` (source only),
each for D seconds, on one server. Counts streams whose session lost media (recorded duration short
of what was published) and measures the server's resident memory per stream.

    bench/live_density.py [streams, default 100] [seconds, default 30] [starts per second, default 50]

Encoders start at a steady rate (50 a second by default) rather than all at once: 500 ffmpeg
processes starting in the same instant cost the 2 cores some 25 s of CPU on their own, which
measures the load generator, not the server.

Publishers replay one pre-encoded clip with `-c copy`, so the encoders cost almost nothing and
the machine's 2 cores go to the server. Results: bench/README.md.
"""
import json, os, subprocess, sys, tempfile, time

from studio_bench import api, server

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
        encoders = []
        for i, s in enumerate(streams):
            time.sleep(max(0.0, started + i / starts_per_second - time.monotonic()))
            encoders.append(subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", clip, "-c", "copy", "-f", "flv",
                                              f"rtmp://127.0.0.1:{rtmp}/live/{s['streamKey']}"]))
        peak_rss = idle_rss
        while any(e.poll() is None for e in encoders):
            peak_rss = max(peak_rss, rss_mib(process.pid))
            time.sleep(0.5)
        wall = time.monotonic() - started
        cpu = cpu_seconds(process.pid) - cpu_before
        failed_encoders = sum(1 for e in encoders if e.returncode != 0)
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
            "streams_short_of_media": short,
            "recorded_s": {"min": round(min(durations), 2), "max": round(max(durations), 2)},
            "server_rss_mib": {"idle": round(idle_rss, 1), "peak": round(peak_rss, 1),
                               "per_stream": round((peak_rss - idle_rss) / count, 2)},
            "server_cpu_cores": round(cpu / wall, 2),
        }, indent=1))
