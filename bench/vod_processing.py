#!/usr/bin/env python3
"""VOD processing time: a SECONDS (default 60) long 1080p30 H.264/AAC file, uploaded to the release
`studio` binary (local media directory, bundled transcoder) and made into an asset through the
default ladder (the source copied, 720p and 360p with libx264, and 1080p re-encoded: renditions
never above the source), timed from the end of the upload to `ready`; against the ffmpeg CLI doing
the same ladder on the same machine in one command (decode once, the three renditions with the
same encoder settings, VOD HLS in 6 s segments, the source copied as a fourth variant). Static MP4s
are off; studio also makes its thumbnails (one picture decoded per segment). Prints both times and
their ratio (studio / ffmpeg).

    bench/vod_processing.py [SECONDS]
"""
import http.client, os, shutil, subprocess, sys, tempfile, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import studio_bench  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
# The bundled transcoder's settings (media-core/src/transcode/local.rs) and the default ladder
# (api/src/profiles.rs).
LADDER = [("1080p0", 1920, 1080, 6_000_000), ("720p0", 1280, 720, 3_000_000), ("360p0", 640, 360, 1_000_000)]
PRESET = "veryfast"

work = tempfile.mkdtemp(prefix="studio-bench-vodproc-")
try:
    source = os.path.join(work, "source.mp4")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(SECONDS), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
                    "-b:v", "8M", "-g", "60", "-c:a", "aac", source], check=True)

    # ffmpeg CLI: the same ladder in one process.
    out = os.path.join(work, "cli")
    os.makedirs(out)
    split = f"[0:v]split={len(LADDER)}" + "".join(f"[v{i}]" for i in range(len(LADDER))) + ";"
    split += ";".join(f"[v{i}]scale={w}:{h}[s{i}]" for i, (_, w, h, _) in enumerate(LADDER))
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", source, "-filter_complex", split]
    for i, (name, w, h, rate) in enumerate(LADDER):
        os.makedirs(os.path.join(out, name))
        args += ["-map", f"[s{i}]", "-map", "0:a", "-c:v", "libx264", "-preset", PRESET, "-b:v", str(rate),
                 "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-c:a", "copy",
                 "-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod",
                 os.path.join(out, name, "index.m3u8")]
    os.makedirs(os.path.join(out, "source"))
    args += ["-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod",
             os.path.join(out, "source", "index.m3u8")]
    started = time.monotonic()
    subprocess.run(args, check=True)
    cli = time.monotonic() - started

    # studio: upload, then time processing to ready.
    data = os.path.join(work, "data")
    with studio_bench.server(data) as (api, _base, _rtmp, key, _process):
        requested = studio_bench.api("POST", api + "/asset/request-upload", key, {"name": "bench"})
        parts = urllib.parse.urlsplit(requested["url"])
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600, blocksize=1 << 20)
        with open(source, "rb") as body:
            conn.request("PUT", parts.path + "?" + parts.query, body=body,
                         headers={"Content-Length": str(os.path.getsize(source))})
            assert conn.getresponse().status == 200
        started = time.monotonic()
        while True:
            asset = studio_bench.api("GET", api + f"/asset/{requested['asset']['id']}", key)
            phase = asset["status"]["phase"]
            if phase in ("ready", "failed"):
                break
            time.sleep(0.1)
        studio = time.monotonic() - started
        assert phase == "ready", asset
    print(f"| {SECONDS} s 1080p30 through the default ladder | seconds |")
    print("|---|---|")
    print(f"| ffmpeg CLI (one command, {PRESET}) | {cli:.1f} |")
    print(f"| studio (upload task, bundled transcoder) | {studio:.1f} |")
    print(f"| studio / ffmpeg | {studio / cli:.2f} |")
finally:
    shutil.rmtree(work, ignore_errors=True)
