// Signs a playback JWT as a Livepeer app's backend does, with signAccessJwt of the official
// @livepeer/react package (ES256 over WebCrypto).
//
//   node tests/player/sign-jwt.mjs PRIVATE_KEY PUBLIC_KEY PLAYBACK_ID [EXPIRATION_SECONDS]
//
// PRIVATE_KEY and PUBLIC_KEY are a signing key's `privateKey` and `publicKey` as the API returns
// them (base64 of PEM). Prints the token.

import { signAccessJwt } from "@livepeer/react/crypto";

const [privateKey, publicKey, playbackId, expiration] = process.argv.slice(2);
if (!privateKey || !publicKey || !playbackId) {
  console.error("usage: node sign-jwt.mjs PRIVATE_KEY PUBLIC_KEY PLAYBACK_ID [EXPIRATION_SECONDS]");
  process.exit(2);
}
const token = await signAccessJwt({
  privateKey,
  publicKey,
  issuer: "https://app.example.com",
  playbackId,
  expiration: expiration ? Number(expiration) : undefined,
  custom: { userId: "viewer-1" },
});
console.log(token);
