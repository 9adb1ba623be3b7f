// Plays an HLS URL with hls.js in headless Chromium, as a viewer's browser would.
//
//   node tests/player/play.mjs URL
//
// A throwaway HTTP server on 127.0.0.1:0 serves one page and hls.js (from node_modules), so the
// page's origin differs from the stream's and CORS is exercised for real. Chromium is the Debian
// package at /usr/bin/chromium (override with CHROMIUM), driven by playwright-core.
//
// Success: the video has played at least MIN_TIME seconds (currentTime) and decoded frames of
// 640x360. Prints one JSON line {"played":true,"currentTime":..,"width":..,"height":..,"frames":..}
// and exits 0. On timeout (PLAYER_TIMEOUT_MS, default 20000) or a fatal hls.js error it prints one
// JSON line {"played":false,"error":..,"events":[..],...} and exits 1.

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const MIN_TIME = 2;
const WIDTH = 640;
const HEIGHT = 360;

const url = process.argv[2];
if (!url) {
  console.error("usage: node play.mjs URL");
  process.exit(2);
}
const timeoutMs = Number(process.env.PLAYER_TIMEOUT_MS || 20_000);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const hlsPath = fileURLToPath(new URL("./node_modules/hls.js/dist/hls.min.js", import.meta.url));

const page = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>player</title></head>
<body>
<video id="v" muted autoplay playsinline width="${WIDTH}" height="${HEIGHT}"></video>
<script src="/hls.min.js"></script>
<script>
  window.__events = [];
  window.__fatal = null;
  const note = (e) => { if (window.__events.length < 200) window.__events.push(e); };
  const video = document.getElementById("v");
  const src = ${JSON.stringify(url)};
  if (!window.Hls) {
    window.__fatal = { type: "page", details: "hls.js did not load" };
  } else if (!Hls.isSupported()) {
    window.__fatal = { type: "page", details: "hls.js reports MSE unsupported" };
  } else {
    const hls = new Hls();
    window.__hls = hls;
    for (const name of ["MANIFEST_LOADED", "MANIFEST_PARSED", "LEVEL_LOADED", "FRAG_LOADED", "FRAG_BUFFERED", "BUFFER_CODECS"]) {
      hls.on(Hls.Events[name], (_, data) => {
        const e = { t: Math.round(performance.now()), event: name };
        if (data && data.frag) e.sn = data.frag.sn;
        if (name === "BUFFER_CODECS" && data.video) {
          e.video = data.video.codec;
          if (data.video.metadata) e.size = data.video.metadata.width + "x" + data.video.metadata.height;
        }
        if (name === "MANIFEST_PARSED" && data.levels) {
          e.levels = data.levels.map((l) => l.width + "x" + l.height + " " + l.codecSet);
        }
        if (name === "LEVEL_LOADED" && data.details) {
          e.live = data.details.live;
          e.fragments = data.details.fragments.length;
        }
        note(e);
      });
    }
    hls.on(Hls.Events.ERROR, (_, data) => {
      const e = {
        t: Math.round(performance.now()),
        event: "ERROR",
        type: data.type,
        details: data.details,
        fatal: data.fatal,
        url: data.url || (data.frag && data.frag.url) || (data.context && data.context.url),
        status: data.response && data.response.code,
        reason: data.reason || (data.error && String(data.error)),
      };
      note(e);
      if (data.fatal) window.__fatal = e;
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      video.play().catch((err) => note({ t: Math.round(performance.now()), event: "play() rejected", reason: String(err) }));
    });
    video.addEventListener("error", () => {
      const err = video.error;
      window.__fatal = { type: "media", details: err ? err.code + " " + err.message : "unknown" };
    });
    for (const name of ["playing", "waiting", "stalled"]) {
      video.addEventListener(name, () => note({ t: Math.round(performance.now()), event: "video:" + name, currentTime: video.currentTime }));
    }
    hls.loadSource(src);
    hls.attachMedia(video);
  }
</script>
</body>
</html>
`;

const server = createServer(async (req, res) => {
  try {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(page);
    } else if (path === "/favicon.ico") {
      res.writeHead(204);
      res.end();
    } else if (path === "/hls.min.js") {
      const js = await readFile(hlsPath);
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(js);
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  } catch (err) {
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(String(err));
  }
});

let browser;
let result;
const logs = [];
// A last resort: whatever hangs (launch, close), the process ends and says so.
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ played: false, error: "watchdog: play.mjs did not finish", logs }));
  process.exit(1);
}, timeoutMs + 30_000);
watchdog.unref();

try {
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;

  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 20_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => {
    if (m.type() === "error" && logs.length < 50) logs.push(`console: ${m.text()}`);
  });
  tab.on("pageerror", (e) => logs.length < 50 && logs.push(`pageerror: ${e.message}`));
  tab.on("requestfailed", (r) => logs.length < 50 && logs.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));

  await tab.goto(pageUrl, { timeout: 10_000 });
  const deadline = Date.now() + timeoutMs;
  let state;
  for (;;) {
    state = await tab.evaluate(() => {
      const v = document.getElementById("v");
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0 };
      return {
        currentTime: v.currentTime,
        width: v.videoWidth,
        height: v.videoHeight,
        frames: q.totalVideoFrames,
        readyState: v.readyState,
        paused: v.paused,
        fatal: window.__fatal,
      };
    });
    const { fatal, ...media } = state;
    if (fatal) {
      result = { played: false, error: fatal, ...media };
      break;
    }
    if (state.currentTime >= MIN_TIME && state.frames > 0 && state.width === WIDTH && state.height === HEIGHT) {
      result = { played: true, currentTime: state.currentTime, width: state.width, height: state.height, frames: state.frames };
      break;
    }
    if (Date.now() >= deadline) {
      result = { played: false, error: `timed out after ${timeoutMs} ms`, ...media };
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!result.played) {
    result.events = await tab.evaluate(() => window.__events).catch(() => []);
    result.logs = logs;
  }
} catch (err) {
  result = { played: false, error: String(err && err.stack ? err.stack : err), logs };
} finally {
  if (browser) await browser.close().catch(() => {});
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

console.log(JSON.stringify(result));
process.exit(result.played ? 0 : 1);
