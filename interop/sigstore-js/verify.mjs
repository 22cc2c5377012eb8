#!/usr/bin/env node
// Verify a Sigstore bundle with sigstore-js's @sigstore/verify, as any Node.js
// consumer of an attestd bundle would. Tests run it on the bundles that
// `attestctl attestation export-bundle` writes; docs/sigstore.md shows how.
//
//   node interop/sigstore-js/verify.mjs --bundle B.json [--public-key agent.pub]
//       [--trusted-root trusted_root.json]
//       [--tlog-threshold N] [--ctlog-threshold N] [--timestamp-threshold N]
//
// Without --trusted-root the trust material is empty: no Fulcio CA, no Rekor,
// no CT log, no timestamp authority, so only a key bundle can pass, and only
// with every threshold at 0. A threshold left out keeps the library's default
// (1), which is what a stock verifier asks for.
//
// Prints one JSON object on stdout. Exit 0: verified. 1: @sigstore/verify
// refused the bundle (its error code and message are printed). 2: bad usage
// or unreadable input.
import { readFileSync } from "node:fs";
import { createHash, createPublicKey } from "node:crypto";
import { parseArgs } from "node:util";

import { bundleFromJSON } from "@sigstore/bundle";
import { TrustedRoot } from "@sigstore/protobuf-specs";
import { toSignedEntity, toTrustMaterial, Verifier } from "@sigstore/verify";

const EMPTY_ROOT = {
  mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
};

function fail(code, result) {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(code);
}

function threshold(value, flag) {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fail(2, { verified: false, usage: `${flag} wants an integer >= 0` });
  return n;
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      bundle: { type: "string" },
      "public-key": { type: "string" },
      "trusted-root": { type: "string" },
      "tlog-threshold": { type: "string" },
      "ctlog-threshold": { type: "string" },
      "timestamp-threshold": { type: "string" },
    },
    strict: true,
  }));
} catch (err) {
  fail(2, { verified: false, usage: err.message });
}
if (!args.bundle) fail(2, { verified: false, usage: "--bundle is required" });

let bundle, root, publicKey;
try {
  bundle = bundleFromJSON(JSON.parse(readFileSync(args.bundle, "utf8")));
  const rootJson = args["trusted-root"] ? JSON.parse(readFileSync(args["trusted-root"], "utf8")) : EMPTY_ROOT;
  root = TrustedRoot.fromJSON(rootJson);
  if (args["public-key"]) publicKey = createPublicKey(readFileSync(args["public-key"], "utf8"));
} catch (err) {
  fail(2, { verified: false, input: `${err.name}: ${err.message}` });
}

// The key is the caller's, given out of band, as cosign's --key is: the
// bundle's hint only names it, and is not authenticated, so any hint gets
// this key and the signature decides.
const keyFinder = (hint) => {
  if (!publicKey) {
    const err = new Error(`no --public-key given for key hint ${hint}`);
    err.code = "PUBLIC_KEY_ERROR";
    throw err;
  }
  return { publicKey, validFor: () => true };
};

const options = {};
for (const [flag, name] of [
  ["tlog-threshold", "tlogThreshold"],
  ["ctlog-threshold", "ctlogThreshold"],
  ["timestamp-threshold", "timestampThreshold"],
]) {
  const n = threshold(args[flag], `--${flag}`);
  if (n !== undefined) options[name] = n;
}

try {
  const verifier = new Verifier(toTrustMaterial(root, keyFinder), options);
  verifier.verify(toSignedEntity(bundle));
} catch (err) {
  fail(1, { verified: false, code: err.code ?? err.name, message: err.message });
}

const envelope = bundle.content.$case === "dsseEnvelope" ? bundle.content.dsseEnvelope : undefined;
const material = bundle.verificationMaterial.content;
process.stdout.write(
  JSON.stringify({
    verified: true,
    keyHint: material.$case === "publicKey" ? material.publicKey.hint : null,
    payloadType: envelope?.payloadType ?? null,
    payloadSha256: envelope ? createHash("sha256").update(envelope.payload).digest("hex") : null,
  }) + "\n",
);
