// Glass-to-glass latency of WebRTC through the server, measured in one Chromium page: a canvas
// stream is published over WHIP, and the same page plays the stream back over WHEP. The
// publisher draws the wall clock (Date.now() modulo 2^32, ms) into every frame as a barcode;
// the viewer reads it back from the video it plays, so
// publisher and viewer share one clock and latency = the time the page first sees a barcode in
// the played video (polled every 5 ms: up to 5 ms late) - the time it was drawn.
//
//   node bench/webrtc_latency.mjs WHIP_URL WHEP_URL [SECONDS]
//   node bench/webrtc_latency.mjs - WHEP_URL [SECONDS]   # another encoder draws the barcode
//
// Called by bench/webrtc_latency.py, which starts the server. Prints one JSON line:
// {"samples":..,"medianMs":..,"p95Ms":..,"minMs":..,"maxMs":..}.

import { createServer } from "node:http";
import { chromium } from "../tests/player/node_modules/playwright-core/index.mjs";

const [whipArg, whepUrl, seconds = "15"] = process.argv.slice(2);
const whipUrl = whipArg === "-" ? null : whipArg;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const page = `<!doctype html><html><body>
<canvas id="source" width="640" height="360"></canvas>
<video id="v" muted autoplay playsinline></video>
<canvas id="read" width="640" height="360"></canvas>
<script>
// The wall clock in ms, modulo 2^32, as 32 cells of 16 px (white = 1), least significant first.
const BITS = 32, CELL = 16, ROW = 40;
const clock = () => Date.now() % 2 ** 32;
const source = document.getElementById("source");
const draw = source.getContext("2d");
function paint() {
  const t = clock();
  draw.fillStyle = "#808080";
  draw.fillRect(0, 0, 640, 360);
  for (let i = 0; i < BITS; i++) {
    draw.fillStyle = Math.floor(t / 2 ** i) % 2 ? "#fff" : "#000";
    draw.fillRect(i * CELL, 0, CELL, ROW);
  }
  // Something moving, as a camera picture would.
  draw.fillStyle = "#36c";
  draw.fillRect((t / 5) % 600, 120, 40, 200);
}
// A timer, not requestAnimationFrame: headless pages get no animation frames without a display.
setInterval(paint, 10);

let lastStatus = null;
async function exchange(pc, url) {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 2000);
  });
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
  lastStatus = response.status + " " + (response.status === 201 ? "" : await response.clone().text());
  if (response.status !== 201) return false;
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  pc.location = new URL(response.headers.get("Location"), url).toString();
  return true;
}

window.measure = async (whip, whep, seconds) => {
  // Without a WHIP URL, someone else (ffmpeg over RTMP) publishes the barcode.
  let publisher = null;
  if (whip) {
    const stream = source.captureStream(30);
    const track = stream.getVideoTracks()[0];
    track.contentHint = "text"; // keep the resolution: the barcode must stay readable
    publisher = new RTCPeerConnection();
    publisher.addTransceiver(track, { direction: "sendonly" });
    if (!(await exchange(publisher, whip))) return { error: "WHIP refused", status: lastStatus };
  }
  // The stream is live once the server has its first segment; until then WHEP answers 404.
  const video = document.getElementById("v");
  let viewer;
  for (let i = 0; i < 60; i++) {
    viewer = new RTCPeerConnection();
    viewer.addTransceiver("video", { direction: "recvonly" });
    viewer.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
    if (await exchange(viewer, whep)) break;
    viewer.close();
    viewer = null;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!viewer) return { error: "WHEP never answered" };
  const read = document.getElementById("read").getContext("2d", { willReadFrequently: true });
  // Each new barcode is timed when the page first sees it (polled every 5 ms), after a 2 s warm-up.
  const samples = [];
  let last = 0;
  const seen = { readyState: 0, width: 0, decoded: 0, raw: null };
  const started = clock();
  await new Promise((done) => {
    const poll = setInterval(() => {
      const now = clock();
      if (now > started + (seconds + 20) * 1000) { clearInterval(poll); return done(); }
      seen.readyState = video.readyState;
      seen.width = video.videoWidth;
      if (video.readyState < 2) return;
      read.drawImage(video, 0, 0, 640, 360);
      const row = read.getImageData(0, ROW / 2, 640, 1).data;
      let t = 0;
      for (let i = 0; i < BITS; i++) {
        const x = i * CELL + CELL / 2;
        if (row[x * 4] > 128) t += 2 ** i;
      }
      seen.raw = t;
      seen.decoded++;
      if (t === last || t <= 0 || t > now) return;
      last = t;
      if (t > started + 2000) samples.push(now - t);
      if (samples.length > 0 && now > started + 2000 + seconds * 1000) { clearInterval(poll); done(); }
    }, 5);
  });
  await fetch(viewer.location, { method: "DELETE" });
  viewer.close();
  if (publisher) {
    await fetch(publisher.location, { method: "DELETE" });
    publisher.close();
  }
  samples.sort((a, b) => a - b);
  const at = (q) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]);
  if (samples.length === 0) return { error: "no barcode was read", seen };
  return { samples: samples.length, medianMs: at(0.5), p95Ms: at(0.95), minMs: at(0), maxMs: at(1) };
};
</script></body></html>`;

const server = createServer((_, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(page);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--allow-loopback-in-peer-connection",
         "--autoplay-policy=no-user-gesture-required"],
});
let result;
try {
  const tab = await browser.newPage();
  tab.on("crash", () => console.error("the page crashed"));
  tab.on("console", (m) => process.env.DEBUG_PAGE && console.error("page:", m.text()));
  await tab.goto(`http://127.0.0.1:${server.address().port}`);
  result = await tab.evaluate(([a, b, s]) => window.measure(a, b, s), [whipUrl, whepUrl, Number(seconds)]);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
process.exit(result.error ? 1 : 0);
