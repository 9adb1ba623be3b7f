// WHIP and WHEP from headless Chromium, as a browser page on another origin would do them.
//
//   node tests/player/webrtc.mjs whep URL   # play: prints what the page received
//   node tests/player/webrtc.mjs whip URL   # publish the fake camera and microphone
//
// A throwaway HTTP server on 127.0.0.1:0 serves the page, so its origin differs from the
// server's and CORS (the preflight of POST application/sdp and of DELETE, the exposed Location)
// is exercised for real. Chromium is the Debian package at /usr/bin/chromium (override with
// CHROMIUM), driven by playwright-core, with a fake camera and microphone.
//
// whep: waits until MIN_FRAMES video frames were decoded (and audio packets arrived when the
// stream has audio), for at most PLAYER_TIMEOUT_MS (default 20000). Prints one JSON line
// {"ok":true,"framesDecoded":..,"width":..,"height":..,"audioPackets":..,"firstFrameMs":..,
// "codec":..,"location":..,"deleteStatus":..} (the session is ended with DELETE on its Location)
// and exits 0, or {"ok":false,"error":..} and exits 1. WHEP_HEADERS (JSON) adds request headers.
//
// whip: publishes for PUBLISH_MS (default 8000), then ends with DELETE on the Location. Prints
// {"ok":true,"status":201,"location":..,"framesSent":..,"codec":..,"deleteStatus":..} or
// {"ok":false,"status":..,"error":..}. An offer refused prints the status and the error body.

import { createServer } from "node:http";
import { chromium } from "playwright-core";

const [mode, url] = process.argv.slice(2);
if (!["whip", "whep"].includes(mode) || !url) {
  console.error("usage: node webrtc.mjs whip|whep URL");
  process.exit(2);
}
const timeoutMs = Number(process.env.PLAYER_TIMEOUT_MS || 20_000);
const publishMs = Number(process.env.PUBLISH_MS || 8_000);
const minFrames = Number(process.env.MIN_FRAMES || 30);
const extraHeaders = JSON.parse(process.env.WHEP_HEADERS || "{}");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const page = `<!doctype html><html><head><meta charset="utf-8"></head><body>
<video id="v" muted autoplay playsinline></video>
<script>
async function exchange(pc, url, headers) {
  await pc.setLocalDescription(await pc.createOffer());
  // All candidates in the offer: no trickle.
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 2000);
  });
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", ...headers },
    body: pc.localDescription.sdp,
  });
  const text = await response.text();
  if (response.status !== 201) return { status: response.status, error: text };
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  const location = new URL(response.headers.get("Location"), url).toString();
  return { status: 201, location };
}

window.whep = async (url, headers, minFrames, timeoutMs) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const video = document.getElementById("v");
  pc.ontrack = (e) => { if (e.track.kind === "video") video.srcObject = e.streams[0] || new MediaStream([e.track]); };
  const started = performance.now();
  const answer = await exchange(pc, url, headers);
  if (answer.status !== 201) return { ok: false, ...answer };
  let firstFrameMs = null;
  const deadline = started + timeoutMs;
  let last = {};
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const stats = await pc.getStats();
    const report = { framesDecoded: 0, audioPackets: 0 };
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        report.framesDecoded = s.framesDecoded || 0;
        report.width = s.frameWidth;
        report.height = s.frameHeight;
        report.codecId = s.codecId;
        report.freezeCount = s.freezeCount;
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") report.audioPackets = s.packetsReceived || 0;
    });
    if (report.codecId) {
      const codec = stats.get(report.codecId);
      report.codec = codec && codec.mimeType;
    }
    if (report.framesDecoded > 0 && firstFrameMs === null) firstFrameMs = Math.round(performance.now() - started);
    last = report;
    if (report.framesDecoded >= minFrames) break;
  }
  const deleted = await fetch(answer.location, { method: "DELETE" });
  pc.close();
  delete last.codecId;
  return { ok: last.framesDecoded >= minFrames, ...last, firstFrameMs, location: answer.location, deleteStatus: deleted.status,
           connection: pc.connectionState };
};

window.whip = async (url, publishMs) => {
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360, frameRate: 30 }, audio: true });
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const answer = await exchange(pc, url, {});
  if (answer.status !== 201) return { ok: false, ...answer };
  await new Promise((r) => setTimeout(r, publishMs));
  const stats = await pc.getStats();
  let framesSent = 0, codecId = null, audioPackets = 0;
  stats.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") { framesSent = s.framesEncoded || 0; codecId = s.codecId; }
    if (s.type === "outbound-rtp" && s.kind === "audio") audioPackets = s.packetsSent || 0;
  });
  const codec = codecId && stats.get(codecId) ? stats.get(codecId).mimeType : null;
  const deleted = await fetch(answer.location, { method: "DELETE" });
  pc.close();
  return { ok: framesSent > 0, status: 201, location: answer.location, framesSent, audioPackets, codec, deleteStatus: deleted.status };
};
</script></body></html>`;

const server = createServer((_, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(page);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
let result;
try {
  const tab = await browser.newPage();
  await tab.goto(origin);
  result =
    mode === "whep"
      ? await tab.evaluate(([u, h, f, t]) => window.whep(u, h, f, t), [url, extraHeaders, minFrames, timeoutMs])
      : await tab.evaluate(([u, p]) => window.whip(u, p), [url, publishMs]);
} catch (err) {
  result = { ok: false, error: String(err) };
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
