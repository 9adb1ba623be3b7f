// Conformance suite: drives the official Livepeer TypeScript SDK (npm `livepeer`, pinned in
// package.json) against a Studio-compatible server and asserts that every response lands in the
// SDK's success field: no SDKValidationError, no `error` field, the documented status code, and
// the values we sent coming back.
//
// Usage: STUDIO_API_URL=http://127.0.0.1:PORT/api STUDIO_API_KEY=<key> node conformance.mjs
//
// Prints "ok <operation>" per passing check and stops at the first failure with the operation,
// the last HTTP exchange (method, URL, status, body) and a non-zero exit code.

import { Livepeer } from "livepeer";
import { HTTPClient } from "livepeer/lib/http.js";
import { ErrorT, HTTPClientError, SDKError, SDKValidationError } from "livepeer/models/errors/index.js";

const serverURL = process.env.STUDIO_API_URL;
const apiKey = process.env.STUDIO_API_KEY;
if (!serverURL || !apiKey) {
  console.error("usage: STUDIO_API_URL=http://127.0.0.1:PORT/api STUDIO_API_KEY=<key> node conformance.mjs");
  process.exit(2);
}

const BODY_LIMIT = 4000;

// The SDK consumes response bodies while parsing them, so keep a copy of the last exchange for
// failure reports (and for fields the SDK strips, such as a signing key's privateKey).
let last = null;
const httpClient = new HTTPClient();
httpClient.addHook("beforeRequest", async (req) => {
  last = { method: req.method, url: req.url, requestBody: req.body ? await req.clone().text() : "" };
});
httpClient.addHook("response", async (res) => {
  if (last) {
    last.status = res.status;
    last.contentType = res.headers.get("content-type") ?? "";
    last.responseBody = await res.clone().text();
  }
});

const livepeer = new Livepeer({
  apiKey,
  serverURL,
  httpClient,
  retryConfig: { strategy: "none" },
  timeoutMs: 30_000,
});

class CheckFailed extends Error {}

function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

const show = (v) => JSON.stringify(v);
const clip = (s) => (s.length > BODY_LIMIT ? `${s.slice(0, BODY_LIMIT)}... (${s.length} bytes)` : s);

function checkEqual(actual, expected, what) {
  check(show(actual) === show(expected), `${what}: expected ${show(expected)}, got ${show(actual)}`);
}

// Every key of `expected` must be present in `actual` with an equal value (recursively); extra
// keys in `actual` are allowed. Arrays must have the same length.
function checkSubset(actual, expected, what) {
  if (Array.isArray(expected)) {
    check(Array.isArray(actual), `${what}: expected an array, got ${show(actual)}`);
    check(actual.length === expected.length, `${what}: expected ${expected.length} items, got ${show(actual)}`);
    expected.forEach((e, i) => checkSubset(actual[i], e, `${what}[${i}]`));
  } else if (expected !== null && typeof expected === "object") {
    check(actual !== null && typeof actual === "object", `${what}: expected an object, got ${show(actual)}`);
    for (const [k, v] of Object.entries(expected)) checkSubset(actual[k], v, `${what}.${k}`);
  } else {
    check(actual === expected, `${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

// The SDK returns (instead of throwing) any response whose status is not the documented one but
// that carries JSON: it lands in `error` and the data field stays empty.
function checkSuccess(res, status, field) {
  check(res.error === undefined, `response landed in the SDK's \`error\` field (status ${res.statusCode}): ${show(res.error)}`);
  check(res.statusCode === status, `expected status ${status}, got ${res.statusCode}`);
  if (field) check(res[field] !== undefined && res[field] !== null, `response field \`${field}\` is empty`);
  return field ? res[field] : undefined;
}

function checkId(v, what) {
  check(typeof v === "string" && v.length > 0, `${what}: expected a non-empty string, got ${show(v)}`);
}

// Studio error bodies are always JSON `{"errors": ["message", ...]}`.
function checkErrorBody(body) {
  let parsed;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new CheckFailed(`error body is not JSON: ${show(clip(body))}`);
  }
  const errors = parsed?.errors;
  check(
    Array.isArray(errors) && errors.length > 0 && errors.every((e) => typeof e === "string"),
    `error body must be {"errors": ["...", ...]}, got ${clip(body)}`,
  );
}

// Expects the call to be rejected with an HTTP 404 (SDKError) or, for operations that declare a
// typed 404 (playback), with the parsed Studio error body.
async function expect404(fn) {
  let res;
  try {
    res = await fn();
  } catch (err) {
    if (err instanceof SDKError) {
      check(err.statusCode === 404, `expected status 404, got ${err.statusCode}`);
      checkErrorBody(err.body);
      return;
    }
    if (err instanceof ErrorT) {
      check(last?.status === 404, `expected status 404, got ${last?.status}`);
      check(Array.isArray(err.errors) && err.errors.length > 0, `404 body must be {"errors": [...]}, got ${show(err.data$)}`);
      return;
    }
    throw err;
  }
  throw new CheckFailed(`expected the SDK to throw for status 404, but it returned status ${res?.statusCode}`);
}

let passed = 0;
async function step(name, fn) {
  last = null;
  try {
    const value = await fn();
    passed += 1;
    console.log(`ok ${name}`);
    return value;
  } catch (err) {
    fail(name, err);
  }
}

function fail(name, err) {
  const lines = [`FAIL ${name}`];
  if (err instanceof SDKValidationError) {
    lines.push(`  SDK rejected the response (SDKValidationError): ${err.pretty()}`);
  } else if (err instanceof SDKError) {
    lines.push(`  SDKError: ${err.message.split("\n")[0].replace(/ Body\s*$/, "")}`);
  } else if (err instanceof ErrorT) {
    lines.push(`  SDK threw the typed Studio error: ${show(err.data$)}`);
  } else if (err instanceof CheckFailed) {
    lines.push(`  ${err.message}`);
  } else if (err instanceof HTTPClientError) {
    lines.push(`  ${err.name}: ${err.message}`);
  } else {
    lines.push(`  unexpected exception: ${err?.stack ?? err}`);
  }
  if (last) {
    lines.push(`  request: ${last.method} ${last.url}`);
    if (last.requestBody) lines.push(`  request body: ${clip(last.requestBody)}`);
    if (last.status !== undefined) {
      lines.push(`  response: ${last.status} (${last.contentType || "no content-type"})`);
      lines.push(`  response body: ${clip(last.responseBody) || "(empty)"}`);
    } else {
      lines.push("  no response received");
    }
  }
  console.error(lines.join("\n"));
  console.log(`conformance: ${passed} passed, 1 failed`);
  process.exit(1);
}

const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const DEFAULT_PROFILES = [
  { name: "240p0", width: 426, height: 240, bitrate: 250000, fps: 0 },
  { name: "360p0", width: 640, height: 360, bitrate: 800000, fps: 0 },
  { name: "480p0", width: 854, height: 480, bitrate: 1600000, fps: 0 },
  { name: "720p0", width: 1280, height: 720, bitrate: 3000000, fps: 0 },
];

// ---------------------------------------------------------------- stream (+ playback)

const streamInput = {
  name: `sdk-js-stream-${run}`,
  profiles: [
    { name: "720p-custom", width: 1280, height: 720, bitrate: 2500000, fps: 30, fpsDen: 1, gop: "2.0", profile: "H264High", encoder: "H.264" },
    { name: "360p", width: 640, height: 360, bitrate: 800000, fps: 0 },
  ],
  record: true,
  userTags: { team: "sdk", priority: 3, labels: ["a", 2] },
  playbackPolicy: { type: "public" },
};

const stream = await step("stream.create", async () => {
  const s = checkSuccess(await livepeer.stream.create(streamInput), 201, "stream");
  checkId(s.id, "stream.id");
  checkId(s.streamKey, "stream.streamKey");
  checkId(s.playbackId, "stream.playbackId");
  checkEqual(s.name, streamInput.name, "stream.name");
  checkSubset(s.profiles, streamInput.profiles, "stream.profiles");
  checkEqual(s.record, true, "stream.record");
  checkEqual(s.userTags, streamInput.userTags, "stream.userTags");
  checkEqual(s.playbackPolicy?.type, "public", "stream.playbackPolicy.type");
  checkEqual(s.isActive, false, "stream.isActive");
  checkEqual(s.suspended, false, "stream.suspended");
  return s;
});

const defaultStream = await step("stream.create (default profiles)", async () => {
  const name = `sdk-js-defaults-${run}`;
  const s = checkSuccess(await livepeer.stream.create({ name }), 201, "stream");
  checkId(s.id, "stream.id");
  checkEqual(s.name, name, "stream.name");
  checkSubset(s.profiles, DEFAULT_PROFILES, "stream.profiles");
  checkEqual(s.record, false, "stream.record");
  return s;
});

await step("stream.get", async () => {
  const s = checkSuccess(await livepeer.stream.get(stream.id), 200, "stream");
  for (const k of ["id", "name", "streamKey", "playbackId", "record", "userTags"]) {
    checkEqual(s[k], stream[k], `stream.${k}`);
  }
  checkSubset(s.profiles, streamInput.profiles, "stream.profiles");
});

await step("stream.getAll", async () => {
  const list = checkSuccess(await livepeer.stream.getAll(), 200, "data");
  check(Array.isArray(list), `expected an array, got ${show(list)}`);
  const ids = list.map((s) => s.id);
  for (const id of [stream.id, defaultStream.id]) check(ids.includes(id), `stream ${id} missing from list ${show(ids)}`);
});

await step("stream.getAll (streamsonly=1)", async () => {
  const list = checkSuccess(await livepeer.stream.getAll("1"), 200, "data");
  check(list.some((s) => s.id === stream.id), `stream ${stream.id} missing from list`);
});

await step("playback.get", async () => {
  const info = checkSuccess(await livepeer.playback.get(stream.playbackId), 200, "playbackInfo");
  checkEqual(info.type, "live", "playbackInfo.type");
  const sources = info.meta?.source ?? [];
  const hls = sources.find((s) => s.hrn === "HLS (TS)");
  check(hls, `meta.source has no "HLS (TS)" entry: ${show(sources)}`);
  checkEqual(hls.type, "html5/application/vnd.apple.mpegurl", "HLS source type");
  check(hls.url.includes(stream.playbackId), `source url ${hls.url} does not contain the playback id`);
  // HLS, then WebRTC (WHEP), as Studio lists them.
  checkEqual(sources.map((s) => s.hrn), ["HLS (TS)", "WebRTC (H264)"], "live source names");
  const webrtc = sources[1];
  checkEqual(webrtc.type, "html5/video/h264", "WebRTC source type");
  check(webrtc.url.endsWith(`/webrtc/${stream.playbackId}`), `WebRTC url ${webrtc.url}`);
  checkEqual(info.meta.live, 0, "meta.live (stream is idle)");
});

await step("playback.get (unknown id -> 404)", () => expect404(() => livepeer.playback.get("nonexistent")));

const renamed = `${streamInput.name}-renamed`;
const newTags = { team: "sdk", stage: "updated" };
await step("stream.update (name, record, userTags)", async () => {
  checkSuccess(await livepeer.stream.update({ name: renamed, record: false, userTags: newTags }, stream.id), 204);
  const s = checkSuccess(await livepeer.stream.get(stream.id), 200, "stream");
  checkEqual(s.name, renamed, "stream.name after update");
  checkEqual(s.record, false, "stream.record after update");
  checkEqual(s.userTags, newTags, "stream.userTags after update");
  checkSubset(s.profiles, streamInput.profiles, "stream.profiles after update");
});

for (const suspended of [true, false]) {
  await step(`stream.update (suspended=${suspended})`, async () => {
    checkSuccess(await livepeer.stream.update({ suspended }, stream.id), 204);
    const s = checkSuccess(await livepeer.stream.get(stream.id), 200, "stream");
    checkEqual(s.suspended, suspended, "stream.suspended after update");
    checkEqual(s.name, renamed, "stream.name after update");
  });
}

const inlineTargetId = await step("stream.addMultistreamTarget", async () => {
  const payload = { profile: "source", spec: { name: `sdk-js-inline-${run}`, url: "rtmp://example.com/live/key" } };
  checkSuccess(await livepeer.stream.addMultistreamTarget(payload, stream.id), 204);
  const s = checkSuccess(await livepeer.stream.get(stream.id), 200, "stream");
  const targets = s.multistream?.targets ?? [];
  check(targets.length === 1, `expected 1 multistream target on the stream, got ${show(s.multistream)}`);
  checkEqual(targets[0].profile, "source", "multistream.targets[0].profile");
  checkId(targets[0].id, "multistream.targets[0].id");
  return targets[0].id;
});

await step("multistream.get (target created inline)", async () => {
  const t = checkSuccess(await livepeer.multistream.get(inlineTargetId), 200, "multistreamTarget");
  checkEqual(t.id, inlineTargetId, "multistreamTarget.id");
  checkEqual(t.name, `sdk-js-inline-${run}`, "multistreamTarget.name");
});

await step("stream.removeMultistreamTarget", async () => {
  checkSuccess(await livepeer.stream.removeMultistreamTarget(stream.id, inlineTargetId), 204);
  const s = checkSuccess(await livepeer.stream.get(stream.id), 200, "stream");
  const targets = s.multistream?.targets ?? [];
  check(targets.length === 0, `expected no multistream targets after removal, got ${show(s.multistream)}`);
});

await step("multistream.delete (target created inline)", async () => {
  checkSuccess(await livepeer.multistream.delete(inlineTargetId), 204);
});

await step("stream.terminate", async () => {
  checkSuccess(await livepeer.stream.terminate(stream.id), 204);
});

await step("stream.delete", async () => {
  checkSuccess(await livepeer.stream.delete(stream.id), 204);
  checkSuccess(await livepeer.stream.delete(defaultStream.id), 204);
});

await step("stream.get (deleted -> 404)", () => expect404(() => livepeer.stream.get(stream.id)));
await step("playback.get (deleted stream -> 404)", () => expect404(() => livepeer.playback.get(stream.playbackId)));

// ---------------------------------------------------------------- multistream

const targetName = `sdk-js-target-${run}`;
const target = await step("multistream.create", async () => {
  const t = checkSuccess(
    await livepeer.multistream.create({ name: targetName, url: "rtmp://example.com/live/abc" }),
    201,
    "multistreamTarget",
  );
  checkId(t.id, "multistreamTarget.id");
  checkEqual(t.name, targetName, "multistreamTarget.name");
  check(t.disabled === undefined || t.disabled === false, `multistreamTarget.disabled: expected false, got ${show(t.disabled)}`);
  return t;
});

await step("multistream.getAll", async () => {
  const list = checkSuccess(await livepeer.multistream.getAll(), 200, "data");
  check(list.some((t) => t.id === target.id), `target ${target.id} missing from list ${show(list.map((t) => t.id))}`);
});

await step("multistream.get", async () => {
  const t = checkSuccess(await livepeer.multistream.get(target.id), 200, "multistreamTarget");
  checkEqual(t.id, target.id, "multistreamTarget.id");
  checkEqual(t.name, targetName, "multistreamTarget.name");
});

await step("multistream.update", async () => {
  const name = `${targetName}-renamed`;
  // The SDK's patch payload requires `url`.
  checkSuccess(await livepeer.multistream.update({ name, url: "rtmp://example.com/live/def", disabled: true }, target.id), 204);
  const t = checkSuccess(await livepeer.multistream.get(target.id), 200, "multistreamTarget");
  checkEqual(t.name, name, "multistreamTarget.name after update");
  checkEqual(t.disabled, true, "multistreamTarget.disabled after update");
});

await step("multistream.delete", async () => {
  checkSuccess(await livepeer.multistream.delete(target.id), 204);
});

await step("multistream.get (deleted -> 404)", () => expect404(() => livepeer.multistream.get(target.id)));

// ---------------------------------------------------------------- webhook

const webhookInput = {
  name: `sdk-js-webhook-${run}`,
  url: "https://example.com/hooks/studio",
  events: ["stream.started", "stream.idle"],
};

const webhook = await step("webhook.create", async () => {
  const w = checkSuccess(await livepeer.webhook.create(webhookInput), 200, "webhook");
  checkId(w.id, "webhook.id");
  checkSubset(w, webhookInput, "webhook");
  return w;
});

await step("webhook.getAll", async () => {
  const list = checkSuccess(await livepeer.webhook.getAll(), 200, "data");
  check(list.some((w) => w.id === webhook.id), `webhook ${webhook.id} missing from list`);
});

await step("webhook.get", async () => {
  const w = checkSuccess(await livepeer.webhook.get(webhook.id), 200, "webhook");
  checkEqual(w.id, webhook.id, "webhook.id");
  checkSubset(w, webhookInput, "webhook");
});

const webhookUpdate = {
  name: `${webhookInput.name}-renamed`,
  url: "https://example.com/hooks/studio-v2",
  events: ["stream.started", "recording.ready"],
};
await step("webhook.update", async () => {
  const w = checkSuccess(await livepeer.webhook.update(webhookUpdate, webhook.id), 200, "webhook");
  checkEqual(w.id, webhook.id, "webhook.id");
  checkSubset(w, webhookUpdate, "returned webhook");
  const got = checkSuccess(await livepeer.webhook.get(webhook.id), 200, "webhook");
  checkSubset(got, webhookUpdate, "webhook after update");
});

await step("webhook.getLogs", async () => {
  const logs = checkSuccess(await livepeer.webhook.getLogs(webhook.id), 200, "data");
  check(Array.isArray(logs), `expected an array, got ${show(logs)}`);
  for (const log of logs) checkEqual(log.webhookId, webhook.id, "webhookLog.webhookId");
  if (logs.length > 0) {
    const log = checkSuccess(await livepeer.webhook.getLog(webhook.id, logs[0].id), 200, "webhookLog");
    checkEqual(log.id, logs[0].id, "webhookLog.id");
  }
});

await step("webhook.delete", async () => {
  const w = checkSuccess(await livepeer.webhook.delete(webhook.id), 200, "webhook");
  checkEqual(w.id, webhook.id, "deleted webhook.id");
});

await step("webhook.get (deleted -> 404)", () => expect404(() => livepeer.webhook.get(webhook.id)));

// ---------------------------------------------------------------- accessControl (signing keys)

const signingKey = await step("accessControl.create", async () => {
  const k = checkSuccess(await livepeer.accessControl.create(), 200, "signingKey");
  checkId(k.id, "signingKey.id");
  checkId(k.publicKey, "signingKey.publicKey");
  const pem = Buffer.from(k.publicKey, "base64").toString("utf8");
  check(pem.startsWith("-----BEGIN PUBLIC KEY-----"), `publicKey must be base64 of an SPKI PEM, decodes to ${show(pem.slice(0, 40))}`);
  // The SDK's schema has no privateKey (it is stripped from `signingKey`), so read the raw body.
  const raw = JSON.parse(last.responseBody);
  if (raw.privateKey !== undefined) {
    const priv = Buffer.from(String(raw.privateKey), "base64").toString("utf8");
    check(priv.startsWith("-----BEGIN PRIVATE KEY-----"), `privateKey must be base64 of a PKCS#8 PEM, decodes to ${show(priv.slice(0, 40))}`);
  } else {
    console.log("note: accessControl.create response has no privateKey");
  }
  return k;
});

await step("accessControl.getAll", async () => {
  const list = checkSuccess(await livepeer.accessControl.getAll(), 200, "data");
  check(list.some((k) => k.id === signingKey.id), `signing key ${signingKey.id} missing from list`);
});

await step("accessControl.get", async () => {
  const k = checkSuccess(await livepeer.accessControl.get(signingKey.id), 200, "signingKey");
  checkEqual(k.id, signingKey.id, "signingKey.id");
  checkEqual(k.publicKey, signingKey.publicKey, "signingKey.publicKey");
});

await step("accessControl.update (disabled=true)", async () => {
  checkSuccess(await livepeer.accessControl.update({ disabled: true }, signingKey.id), 204);
  const k = checkSuccess(await livepeer.accessControl.get(signingKey.id), 200, "signingKey");
  checkEqual(k.disabled, true, "signingKey.disabled after update");
});

await step("accessControl.update (name)", async () => {
  const name = `sdk-js-key-${run}`;
  checkSuccess(await livepeer.accessControl.update({ name }, signingKey.id), 204);
  const k = checkSuccess(await livepeer.accessControl.get(signingKey.id), 200, "signingKey");
  checkEqual(k.name, name, "signingKey.name after update");
  checkEqual(k.disabled, true, "signingKey.disabled after renaming");
});

await step("accessControl.delete", async () => {
  checkSuccess(await livepeer.accessControl.delete(signingKey.id), 204);
});

await step("accessControl.get (deleted -> 404)", () => expect404(() => livepeer.accessControl.get(signingKey.id)));

// ---------------------------------------------------------------- recordings (asset + session)
// Only when the caller published a recorded session whose recording is ready (tests/api/recording.rs
// sets STUDIO_RECORDING_SESSION_ID): the recording asset and the session's recording fields.

const recordedSessionId = process.env.STUDIO_RECORDING_SESSION_ID;
if (recordedSessionId) {
  const asset = await step("asset.get (recording)", async () => {
    const a = checkSuccess(await livepeer.asset.get(recordedSessionId), 200, "asset");
    checkSubset(a, { id: recordedSessionId, source: { type: "recording", sessionId: recordedSessionId }, status: { phase: "ready" } }, "asset");
    for (const k of ["playbackId", "playbackUrl", "downloadUrl"]) checkId(a[k], `asset.${k}`);
    check(a.size > 0, `asset.size: ${show(a.size)}`);
    check(a.videoSpec?.format === "mp4" && a.videoSpec?.duration > 0, `asset.videoSpec: ${show(a.videoSpec)}`);
    return a;
  });

  await step("asset.getAll", async () => {
    const list = checkSuccess(await livepeer.asset.getAll(), 200, "data");
    check(list.some((a) => a.id === recordedSessionId), `recording asset ${recordedSessionId} missing from list`);
  });

  const session = await step("session.get (recorded)", async () => {
    const s = checkSuccess(await livepeer.session.get(recordedSessionId), 200, "session");
    checkSubset(s, { id: recordedSessionId, record: true, recordingStatus: "ready", recordingUrl: asset.playbackUrl, mp4Url: asset.downloadUrl }, "session");
    return s;
  });

  await step("session.getAll", async () => {
    const list = checkSuccess(await livepeer.session.getAll(), 200, "data");
    const s = list.find((x) => x.id === recordedSessionId);
    check(s !== undefined, `session ${recordedSessionId} missing from list`);
    checkEqual(s.recordingStatus, "ready", "listed session.recordingStatus");
  });

  await step("session.getRecorded", async () => {
    const list = checkSuccess(await livepeer.session.getRecorded(session.parentId), 200, "data");
    checkEqual(list.map((x) => x.mp4Url), [asset.downloadUrl], "recorded sessions' mp4Url");
  });

  await step("playback.get (recording asset)", async () => {
    const info = checkSuccess(await livepeer.playback.get(asset.playbackId), 200, "playbackInfo");
    checkEqual(info.type, "vod", "playbackInfo.type");
    checkEqual(info.meta.source.map((s) => s.hrn), ["MP4", "HLS (TS)"], "vod sources");
    checkEqual(info.meta.source[0].url, asset.downloadUrl, "MP4 source url");
  });

  await step("playback.get (session id)", async () => {
    const info = checkSuccess(await livepeer.playback.get(recordedSessionId), 200, "playbackInfo");
    checkEqual(info.type, "recording", "playbackInfo.type");
    checkEqual(info.meta.source.map((s) => s.url), [asset.playbackUrl], "recording sources");
  });

  // A clip of the recorded session, at times read from the recording's playlist as a player
  // reads them (EXT-X-PROGRAM-DATE-TIME).
  const clip = await step("stream.createClip", async () => {
    const stream = checkSuccess(await livepeer.stream.get(session.parentId), 200, "stream");
    const playlist = await (await fetch(asset.playbackUrl.replace("index.m3u8", "source/index.m3u8"))).text();
    const dates = playlist
      .split("\n")
      .filter((l) => l.startsWith("#EXT-X-PROGRAM-DATE-TIME:"))
      .map((l) => Date.parse(l.slice("#EXT-X-PROGRAM-DATE-TIME:".length)));
    check(dates.length > 1 && dates.every((d) => d > 0), `program dates in the recording's playlist: ${show(playlist)}`);
    const startTime = dates[1] + 200;
    const name = `sdk-js-clip-${run}`;
    const data = checkSuccess(
      await livepeer.stream.createClip({ playbackId: stream.playbackId, sessionId: recordedSessionId, startTime, endTime: startTime + 2000, name }),
      200,
      "data",
    );
    checkSubset(data.asset, { name, source: { type: "clip", playbackId: stream.playbackId, sessionId: recordedSessionId } }, "clip asset");
    checkId(data.task.id, "task.id");
    return data.asset;
  });

  await step("stream.getClips", async () => {
    const clips = checkSuccess(await livepeer.stream.getClips(session.parentId), 200, "data");
    check(clips.some((c) => c.id === clip.id), `clip ${clip.id} missing from the stream's clips`);
  });

  await step("session.getClips", async () => {
    const clips = checkSuccess(await livepeer.session.getClips(recordedSessionId), 200, "data");
    check(clips.some((c) => c.id === clip.id), `clip ${clip.id} missing from the session's clips`);
  });
}

// ---------------------------------------------------------------- VOD (assets and tasks)
// Only when the caller gives a file to upload and a URL to import (tests/api/clients.rs sets
// STUDIO_VOD_FILE and STUDIO_VOD_URL): asset.create, the direct upload, asset.createViaUrl, the
// upload task through task.*, and the ready asset through asset.get and playback.get.

const vodFile = process.env.STUDIO_VOD_FILE;
const vodUrl = process.env.STUDIO_VOD_URL;
if (vodFile && vodUrl) {
  const { readFile } = await import("node:fs/promises");
  const created = await step("asset.create", async () => {
    const data = checkSuccess(await livepeer.asset.create({ name: `sdk-js-upload-${run}`, staticMp4: true }), 200, "data");
    for (const k of ["url", "tusEndpoint"]) checkId(data[k], k);
    checkSubset(data.asset, { name: `sdk-js-upload-${run}`, source: { type: "directUpload" }, status: { phase: "uploading" } }, "asset");
    checkId(data.task?.id, "task.id");
    return data;
  });

  await step("task.get (upload, held)", async () => {
    const t = checkSuccess(await livepeer.task.get(created.task.id), 200, "task");
    checkSubset(t, { id: created.task.id, type: "upload", status: { phase: "pending" } }, "task");
    check(t.status.updatedAt > 0, `task.status.updatedAt: ${show(t.status.updatedAt)}`);
  });

  await step("direct upload (PUT url)", async () => {
    const res = await fetch(created.url, { method: "PUT", body: await readFile(vodFile) });
    check(res.status === 200, `PUT ${created.url}: ${res.status} ${await res.text()}`);
  });

  const ready = await step("asset.get (until ready)", async () => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const a = checkSuccess(await livepeer.asset.get(created.asset.id), 200, "asset");
      check(a.status.phase !== "failed", `the asset failed: ${show(a.status)}`);
      if (a.status.phase === "ready") return a;
      check(Date.now() < deadline, `the asset is still ${a.status.phase}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  });
  check(ready.hash?.some((h) => h.algorithm === "sha256"), `asset.hash: ${show(ready.hash)}`);
  for (const k of ["playbackUrl", "downloadUrl"]) checkId(ready[k], `asset.${k}`);

  await step("task.getAll", async () => {
    const list = checkSuccess(await livepeer.task.getAll(), 200, "data");
    const t = list.find((x) => x.id === created.task.id);
    check(t !== undefined, `task ${created.task.id} missing from list`);
    checkEqual(t.status.phase, "completed", "listed upload task's phase");
  });

  await step("playback.get (uploaded asset)", async () => {
    const info = checkSuccess(await livepeer.playback.get(ready.playbackId), 200, "playbackInfo");
    checkEqual(info.type, "vod", "playbackInfo.type");
    checkEqual(info.meta.source.map((s) => s.hrn), ["MP4", "HLS (TS)", "Thumbnails"], "vod sources");
  });

  await step("asset.update", async () => {
    const a = checkSuccess(await livepeer.asset.update({ name: `sdk-js-renamed-${run}` }, ready.id), 200, "asset");
    checkEqual(a.name, `sdk-js-renamed-${run}`, "asset.name after update");
  });

  await step("asset.delete", async () => {
    checkSuccess(await livepeer.asset.delete(ready.id), 204);
  });

  await step("asset.get (deleted -> 404)", () => expect404(() => livepeer.asset.get(ready.id)));

  await step("asset.createViaUrl", async () => {
    const data = checkSuccess(await livepeer.asset.createViaUrl({ name: `sdk-js-import-${run}`, url: vodUrl }), 201, "twoHundredAndOneApplicationJsonData");
    checkSubset(data.asset, { source: { type: "url", url: vodUrl } }, "asset");
    checkId(data.task?.id, "task.id");
  });

  await step("task.get (unknown -> 404)", () => expect404(() => livepeer.task.get("00000000-0000-4000-8000-000000000000")));

  // Only with an S3 bucket to write to (STUDIO_TRANSCODE_STORAGE, the `storage` of the payload).
  const storage = process.env.STUDIO_TRANSCODE_STORAGE;
  if (storage) {
    const task = await step("transcode.create", async () => {
      const t = checkSuccess(
        await livepeer.transcode.create({ input: { url: vodUrl }, storage: JSON.parse(storage), outputs: { hls: { path: `/sdk-js-${run}` } } }),
        200,
        "task",
      );
      checkEqual(t.type, "transcode-file", "task.type");
      check(!JSON.stringify(t).includes(JSON.parse(storage).credentials.secretAccessKey), "the task shows the bucket's secret");
      return t;
    });
    await step("task.get (transcode, until completed)", async () => {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const t = checkSuccess(await livepeer.task.get(task.id), 200, "task");
        check(t.status.phase !== "failed", `the transcode failed: ${show(t.status)}`);
        if (t.status.phase === "completed") return;
        check(Date.now() < deadline, `the transcode is still ${t.status.phase}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    });
  }
}

console.log(`conformance: ${passed} passed, 0 failed`);
