// The viewership and usage calls of the official TypeScript SDK (`metrics.*`), against our server.
//
//   STUDIO_API_URL=... STUDIO_API_KEY=... PLAYBACK_ID=... ASSET_ID=... node tests/sdk/js/metrics.mjs
//
// Prints one JSON object with what each call returned (after the SDK's own validation); the
// Rust test (tests/api/viewership.rs) checks the numbers against what its players watched.

import { Livepeer } from "livepeer";

const { STUDIO_API_URL: serverURL, STUDIO_API_KEY: apiKey, PLAYBACK_ID: playbackId, ASSET_ID: assetId } = process.env;
if (!serverURL || !apiKey || !playbackId || !assetId) {
  console.error("STUDIO_API_URL, STUDIO_API_KEY, PLAYBACK_ID and ASSET_ID are required");
  process.exit(2);
}
const livepeer = new Livepeer({ apiKey, serverURL, retryConfig: { strategy: "none" }, timeoutMs: 30_000 });
const from = new Date(Date.now() - 24 * 3600 * 1000);

const viewership = await livepeer.metrics.getViewership({ playbackId, from, timeStep: "day", breakdownBy: ["browser"] });
const creator = await livepeer.metrics.getCreatorViewership({ assetId, breakdownBy: ["deviceType"] });
const total = await livepeer.metrics.getPublicViewership(playbackId);
const now = await livepeer.metrics.getRealtimeViewership(playbackId);
const usage = await livepeer.metrics.getUsage({ from: from.getTime(), to: Date.now() });
for (const [name, reply] of Object.entries({ viewership, creator, total, now, usage })) {
  if (reply.statusCode !== 200) {
    console.error(`${name}: HTTP ${reply.statusCode}`);
    process.exit(1);
  }
}
console.log(
  JSON.stringify({
    viewership: viewership.data,
    creator: creator.data,
    total: total.data,
    now: now.data,
    usage: usage.usageMetric,
  }),
);
