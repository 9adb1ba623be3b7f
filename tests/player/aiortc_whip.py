"""Publishes over WHIP with aiortc: a WebRTC stack that is not a browser's (Python, PyAV's
libx264 and Opus, its own ICE, DTLS and SRTP).

    $STUDIO_PYTHON tests/player/aiortc_whip.py URL [SECONDS]

Sends a moving 640x360 test picture as H.264 (the only video codec offered) and Opus audio for
SECONDS (default 8), then ends the session with DELETE on the Location the 201 gave. Prints one
JSON line: {"ok":true,"status":201,"location":..,"connection":"connected","deleteStatus":200,
"framesSent":..} or {"ok":false,"status":..,"error":..}.
"""

import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from aiortc import (
    AudioStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from av import VideoFrame

WIDTH, HEIGHT = 640, 360


class MovingBar(VideoStreamTrack):
    """A white bar sweeping across a grey picture, 30 frames a second."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        luma, *chroma = frame.planes
        y = bytearray([64]) * luma.buffer_size
        x = (self.frames * 8) % (WIDTH - 16)
        for row in range(HEIGHT):
            start = row * luma.line_size + x
            y[start : start + 16] = b"\xff" * 16
        luma.update(bytes(y))
        for plane in chroma:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str, str | None]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/sdp")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers.get("Location")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace"), None


async def publish(url: str, seconds: float) -> dict:
    pc = RTCPeerConnection()
    video = MovingBar()
    transceiver = pc.addTransceiver(video, direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    # aiortc gathers every candidate before the offer is set: no trickle.
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    status, answer, location = await loop.run_in_executor(
        None, http, "POST", url, pc.localDescription.sdp.encode()
    )
    if status != 201:
        await pc.close()
        return {"ok": False, "status": status, "error": answer}
    location = urllib.parse.urljoin(url, location)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.sleep(seconds)
    connection = pc.connectionState
    deleted, _, _ = await loop.run_in_executor(None, http, "DELETE", location)
    await pc.close()
    return {
        "ok": connection == "connected" and deleted == 200,
        "status": status,
        "location": location,
        "connection": connection,
        "deleteStatus": deleted,
        "framesSent": video.frames,
    }


if __name__ == "__main__":
    target = sys.argv[1]
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
    outcome = asyncio.run(publish(target, duration))
    print(json.dumps(outcome))
    sys.exit(0 if outcome["ok"] else 1)
