#!/usr/bin/env python3
"""Live latency: from the encoder sending a frame to the segment holding it being listed in the
media playlist. ffmpeg publishes in real time (-re) with x264's zerolatency tune (no lookahead, so a
frame leaves the encoder as soon as it is read), so the frame at media time t leaves the encoder at
about start + t; each segment's first frame is at the sum of the EXTINF durations before it. The
encoder's own start-up (before its first frame) is counted as latency, so results are pessimistic.

    bench/live_latency.py [seconds]   (needs the release binary; bench/README.md has results)
"""
import json, subprocess, sys, tempfile, time

from studio_bench import api, request, server

seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 20

with tempfile.TemporaryDirectory() as data, server(data) as (base_api, base, rtmp, key, _):
    stream = api("POST", base_api + "/stream", key, {"name": "latency", "profiles": []})
    playlist = f"{base}/hls/{stream['playbackId']}/source/index.m3u8"
    encoder = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "60",
         "-c:a", "aac", "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/{stream['streamKey']}"])
    start = time.monotonic()
    # Segment uri -> (wall time first listed, its first frame in media time, its duration).
    # A new segment is always appended at the end, so its media start is the previous
    # segment's start plus that segment's duration, whatever the window has dropped.
    seen = {}
    last = None
    while encoder.poll() is None or time.monotonic() - start < seconds + 3:
        try:
            text = request("GET", playlist).decode()
        except OSError:
            text = ""
        now = time.monotonic()
        duration = None
        for line in text.splitlines():
            if line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",")[0])
            elif line and not line.startswith("#") and line not in seen:
                media = 0.0 if last is None else seen[last][1] + seen[last][2]
                seen[line] = (now, media, duration)
                last = line
        if "#EXT-X-ENDLIST" in text:
            break
        time.sleep(0.02)
    encoder.wait()
    # The last segment is listed when the encoder stops, not when its GOP completes.
    rows = sorted(seen.values(), key=lambda r: r[1])[:-1]
    over = [(t - start) - (m + d) for t, m, d in rows if d]
    lat = [(t - start) - m for t, m, d in rows if d]
    durations = [d for _, _, d in rows if d]
    print(json.dumps({
        "segments": len(rows),
        "segment_duration_s": round(sum(durations) / len(durations), 3),
        "latency_first_frame_s": {"mean": round(sum(lat) / len(lat), 3), "max": round(max(lat), 3)},
        "beyond_segment_duration_s": {"mean": round(sum(over) / len(over), 3), "max": round(max(over), 3)},
        "goal": "latency <= segment duration + 0.5 s",
    }, indent=1))
