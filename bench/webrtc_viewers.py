#!/usr/bin/env python3
"""WHEP viewers of one 720p stream: how many one node serves without a frozen viewer, and the
server's CPU per viewer.

ffmpeg publishes 1280x720 30 fps H.264 (x264 `ultrafast` + `zerolatency`, 2.5 Mbit/s, 2 s GOP)
and AAC over RTMP; the server's CPU is read from /proc for SECONDS without viewers, then for
SECONDS while `whep-load` (tests/load/whep_load.rs, one process) plays the stream with VIEWERS
str0m peers that receive every packet (frames are counted, not decoded). A viewer froze if it
received no video frame for a second or more after its first.

    cargo build --release -p studio-api --bin studio -p studio-tests --bin whep-load
    bench/webrtc_viewers.py [viewers, default 200] [seconds, default 20]

STUDIO_BENCH_BINARY and WHEP_LOAD run other builds (e.g. debug ones).
"""
import json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from studio_bench import TARGET, api, server  # noqa: E402

VIEWERS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
WHEP_LOAD = os.environ.get("WHEP_LOAD", os.path.join(TARGET, "release", "whep-load"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


with tempfile.TemporaryDirectory() as data, server(data) as (base_api, base, rtmp, key, process):
    stream = api("POST", base_api + "/stream", key, {"name": "viewers", "profiles": []})
    encoder = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", str(2 * SECONDS + 60), "-pix_fmt", "yuv420p", "-c:v", "libx264",
         "-preset", "ultrafast", "-tune", "zerolatency", "-b:v", "2500k", "-g", "60", "-c:a", "aac",
         "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/{stream['streamKey']}"])
    try:
        for _ in range(100):
            if api("GET", f"{base_api}/stream/{stream['id']}", key)["isActive"]:
                break
            time.sleep(0.2)
        before = cpu_seconds(process.pid)
        time.sleep(SECONDS)
        idle = (cpu_seconds(process.pid) - before) / SECONDS
        before = cpu_seconds(process.pid)
        load = subprocess.run([WHEP_LOAD, f"{base}/webrtc/{stream['playbackId']}", str(VIEWERS), str(SECONDS)],
                              capture_output=True, text=True, timeout=SECONDS + 120)
        busy = (cpu_seconds(process.pid) - before) / SECONDS
        if load.returncode != 0:
            raise SystemExit(f"whep-load failed:\n{load.stdout}\n{load.stderr}")
        report = json.loads(load.stdout.strip().splitlines()[-1])
        report.update({
            "serverCpuWithoutViewers": round(idle, 3),
            "serverCpuWithViewers": round(busy, 3),
            "serverCpuPerViewerPercent": round(100 * (busy - idle) / max(VIEWERS, 1), 3),
        })
        print(json.dumps(report))
    finally:
        encoder.kill()
        encoder.wait()
