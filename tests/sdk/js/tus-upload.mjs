// Uploads a file with tus-js-client (pinned in package.json) as a browser or Node backend would:
// in 32 KiB chunks, aborted once part of it is sent, then resumed in a new Upload found with
// findPreviousUploads (the URL kept in a FileUrlStorage). Prints one JSON line:
// {"resumedAt": <the offset the server reported when resuming>, "url": <the upload URL>}.
//
// Usage: node tus-upload.mjs <tusEndpoint> <file> <url-storage-file>

import { readFileSync } from "node:fs";
import { FileUrlStorage, Upload } from "tus-js-client";

const [endpoint, file, storagePath] = process.argv.slice(2);
if (!endpoint || !file || !storagePath) {
  console.error("usage: node tus-upload.mjs <tusEndpoint> <file> <url-storage-file>");
  process.exit(2);
}
const data = readFileSync(file);
const urlStorage = new FileUrlStorage(storagePath);
const options = (extra) => ({
  endpoint,
  chunkSize: 32 * 1024,
  retryDelays: [],
  urlStorage,
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: true,
  metadata: { filename: "upload.mp4", filetype: "video/mp4" },
  ...extra,
});

// First attempt: abort once 40 % is sent.
await new Promise((resolve, reject) => {
  let aborted = false;
  const upload = new Upload(
    data,
    options({
      onProgress: (sent, total) => {
        if (!aborted && sent >= total * 0.4) {
          aborted = true;
          upload.abort().then(resolve, reject);
        }
      },
      onError: reject,
      onSuccess: () => reject(new Error("the upload finished before it could be aborted")),
    }),
  );
  upload.start();
});

// Second attempt: a new Upload finds the first one and resumes it.
let resumedAt = null;
const url = await new Promise((resolve, reject) => {
  const upload = new Upload(
    data,
    options({
      onAfterResponse: (req, res) => {
        if (req.getMethod() === "HEAD" && resumedAt === null) {
          resumedAt = Number(res.getHeader("Upload-Offset"));
        }
      },
      onError: reject,
      onSuccess: () => resolve(upload.url),
    }),
  );
  upload.findPreviousUploads().then((previous) => {
    if (previous.length !== 1) {
      reject(new Error(`expected one previous upload, found ${previous.length}`));
      return;
    }
    upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  }, reject);
});
console.log(JSON.stringify({ resumedAt, url }));
