#!/usr/bin/env python3
"""Glass-to-glass latency of WebRTC playback (bench/webrtc_latency.mjs measures, in headless
Chromium, the time from a barcode of the wall clock being drawn to it being seen in the video the
page plays over WHEP):

- WHIP -> WHEP: the page publishes a canvas over WHIP and plays it back over WHEP;
- RTMP -> WHEP: ffmpeg (x264 `zerolatency`, `-re`) draws the barcode from its own clock and
  publishes over RTMP; the page plays over WHEP. ffmpeg's start-up is counted as latency (its
  first frame is stamped with the time it was launched), so this one is pessimistic.

    bench/webrtc_latency.py [seconds per run, default 15]   (bench/README.md has results)

Runs the release binary (STUDIO_BENCH_BINARY runs another build).
"""
import json, subprocess, sys, tempfile, time, os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from studio_bench import api, server  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def measure(whip, whep):
    out = subprocess.run(["node", os.path.join(ROOT, "bench", "webrtc_latency.mjs"), whip, whep, str(SECONDS)],
                         capture_output=True, text=True, timeout=SECONDS + 90)
    line = next((l for l in reversed(out.stdout.splitlines()) if l.startswith("{")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"webrtc_latency.mjs failed:\n{out.stdout}\n{out.stderr[-2000:]}")
    return json.loads(line)


with tempfile.TemporaryDirectory() as data, server(data) as (base_api, base, rtmp, key, _):
    whip = api("POST", base_api + "/stream", key, {"name": "whip latency", "profiles": []})
    print("WHIP -> WHEP:", json.dumps(measure(f"{base}/webrtc/{whip['streamKey']}", f"{base}/webrtc/{whip['playbackId']}")))

    rtmp_stream = api("POST", base_api + "/stream", key, {"name": "rtmp latency", "profiles": []})
    start_ms = int(time.time() * 1000) % 2**32
    # Cell b of the 32 (16 px each) is bit b of the wall clock in ms, modulo 2^32.
    bar = (f"[1:v]geq=lum='if(mod(floor(mod({start_ms}+T*1000\\,4294967296)/pow(2\\,floor(X/16)))\\,2)\\,255\\,0)'"
           ":cb=128:cr=128[bar];[0:v][bar]overlay=0:0,format=yuv420p")
    encoder = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
         "-f", "lavfi", "-i", "color=black:size=512x40:rate=30", "-filter_complex", bar,
         "-t", str(SECONDS + 40), "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30",
         "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/{rtmp_stream['streamKey']}"])
    try:
        print("RTMP -> WHEP:", json.dumps(measure("-", f"{base}/webrtc/{rtmp_stream['playbackId']}")))
    finally:
        encoder.kill()
        encoder.wait()
