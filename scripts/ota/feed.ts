import { createHash, X509Certificate } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import { type DsseEnvelope, signEnvelope, verifyEnvelope } from '../attest/dsse.ts';
import { InputError, VerificationError } from '../errors.ts';
import { RELEASE_ENTRY, type ReleaseInfo } from '../formats/ota/metadata.ts';
import { readWholeFileSignature } from '../formats/ota/whole-file.ts';
import { readPayload } from '../formats/payload/reader.ts';
import { assertPayloadSigned, loadPayloadSigningKey } from '../formats/payload/signature.ts';
import { otaSigningKey } from '../keys/store.ts';
import { loadProduct } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';

/**
 * An update feed any static web server can host, for OTA packages made by `omie ota`:
 *
 *   <feed>/<device>.json       LineageOS Updater's response ({"response":[{datetime, filename, id,
 *                              romtype, size, url, version}]}), full OTAs only: the Updater has no
 *                              notion of a base build, so it must never be offered an incremental
 *   <feed>/manifest.dsse.json  the signed manifest (a DSSE envelope): every OTA with its SHA-256 and
 *                              size, and for incrementals the fingerprint of the build they patch
 *   <feed>/ota.x509.pem        the certificate that signs the manifest and the OTAs
 *   <feed>/<ota>.zip           the packages, as published
 *
 * The manifest is signed with the partner's OTA key, the one that signs the packages: a device
 * or a mirror checks both against the certificate it already trusts. Point the Updater at it with
 * lineage.updater.uri=<url-base>/{device}.json.
 */

export const MANIFEST_FILE = 'manifest.dsse.json';
export const CERT_FILE = 'ota.x509.pem';
export const MANIFEST_TYPE = 'application/vnd.omie.ota-feed+json';

export interface FeedUpdate {
  filename: string;
  url: string;
  sha256: string;
  size: number;
  kind: 'full' | 'incremental';
  /** The Omie version the package installs. */
  version: string;
  postBuild: string;
  /** ro.build.date.utc of the build it installs (the Updater's "datetime"). */
  postTimestamp: number;
  /** Incrementals: the fingerprint (and Omie version) of the build they patch. */
  baseBuild?: string;
  baseVersion?: string;
  romtype: string;
}

export interface FeedManifest {
  schema: 'omie.ota-feed/1';
  product: string;
  device: string;
  certificateSha256: string;
  updates: FeedUpdate[];
}

export interface LineageUpdate {
  datetime: number;
  filename: string;
  id: string;
  romtype: string;
  size: number;
  url: string;
  version: string;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** The release info entry of an OTA package made by `omie ota`. */
async function releaseInfo(zipPath: string): Promise<ReleaseInfo> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
    yauzl.open(zipPath, { lazyEntries: true, autoClose: false }, (e, z) => (e ? rej(e) : res(z!))),
  ).catch((e: Error) => {
    throw new InputError(`${zipPath} is not a zip: ${e.message}`, { code: 'OTA_NOT_A_PACKAGE' });
  });
  try {
    const data = await new Promise<Buffer | undefined>((res, rej) => {
      zip.on('entry', (e: yauzl.Entry) => {
        if (e.fileName !== RELEASE_ENTRY || e.uncompressedSize > 65536) return zip.readEntry();
        zip.openReadStream(e, (err, s) => {
          if (err || !s) return rej(err);
          const parts: Buffer[] = [];
          s.on('data', (c: Buffer) => parts.push(c));
          s.on('end', () => res(Buffer.concat(parts)));
          s.on('error', rej);
        });
      });
      zip.on('end', () => res(undefined));
      zip.on('error', rej);
      zip.readEntry();
    });
    if (!data)
      throw new InputError(`${zipPath} was not made by omie ota: it has no ${RELEASE_ENTRY}`, {
        code: 'OTA_NOT_OMIE',
        context: { file: zipPath },
      });
    return JSON.parse(data.toString('utf8')) as ReleaseInfo;
  } finally {
    zip.close();
  }
}

/** Everything the feed says of one package, read from the package and checked against its signer. */
async function describePackage(zipPath: string, urlBase: string, romtype: string, sha256?: string) {
  const signature = await readWholeFileSignature(zipPath);
  if (!signature.valid)
    throw new VerificationError('ota-zip', `${zipPath}: the whole-file signature does not verify`, {
      code: 'OTA_SIGNATURE_INVALID',
      context: { file: zipPath },
    });
  const payload = await readPayload(zipPath);
  await assertPayloadSigned(payload, signature.certificate);
  const meta = payload.location.otaMetadata ?? {};
  const info = await releaseInfo(zipPath);
  const filename = basename(zipPath);
  const update: FeedUpdate = {
    filename,
    url: `${urlBase.replace(/\/+$/, '')}/${encodeURIComponent(filename)}`,
    sha256: sha256 ?? (await sha256File(zipPath)),
    size: (await stat(zipPath)).size,
    kind: meta['pre-build'] ? 'incremental' : 'full',
    version: info.version,
    postBuild: meta['post-build'] ?? '',
    postTimestamp: Number(meta['post-timestamp']),
    ...(meta['pre-build'] ? { baseBuild: meta['pre-build'], baseVersion: info.from?.version } : {}),
    romtype,
  };
  return { update, info, device: meta['pre-device'] ?? '', signature };
}

function lineageEntry(u: FeedUpdate): LineageUpdate {
  return {
    datetime: u.postTimestamp,
    filename: u.filename,
    id: u.sha256,
    romtype: u.romtype,
    size: u.size,
    url: u.url,
    version: u.version,
  };
}

async function writeAtomically(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export interface PublishOptions {
  ota: string;
  feed: string;
  urlBase: string;
  /** Product YAML whose OTA key signs the manifest (default: the one the package names). */
  product?: string;
  /** The Updater's release type (ro.lineage.releasetype of the devices). */
  romtype?: string;
  onProgress?: ProgressFn;
}

export interface PublishResult {
  feed: string;
  added: FeedUpdate;
  manifest: FeedManifest;
  lineage: string;
}

/** Adds a package to the feed (copying it in), then rewrites the Updater JSON and the signed manifest. */
export async function publishOta(o: PublishOptions): Promise<PublishResult> {
  const feed = resolve(o.feed);
  if (!/^https?:\/\/\S+$/.test(o.urlBase))
    throw new InputError(`--url-base must be an http(s) URL, not ${JSON.stringify(o.urlBase)}`, {
      code: 'USAGE',
    });
  o.onProgress?.({ stage: 'check package', done: 0, total: 1, unit: 'items' });
  const pkg = await describePackage(o.ota, o.urlBase, o.romtype ?? 'release');
  o.onProgress?.({ stage: 'check package', done: 1, total: 1, unit: 'items' });
  const product = await loadProduct(resolve(o.product ?? pkg.info.productFile));
  if (product.product.name !== pkg.info.product)
    throw new InputError(`${product.file} is ${product.product.name}, the package ${pkg.info.product}`, {
      code: 'OTA_PRODUCT_MISMATCH',
    });
  const files = otaSigningKey(product.product.signing);
  const certPem = await readFile(files.certPem);
  const cert = new X509Certificate(certPem);
  const certSha = createHash('sha256').update(cert.raw).digest('hex');
  if (certSha !== pkg.signature.certificateSha256)
    throw new VerificationError('ota-zip', `${o.ota} is not signed by the product's OTA key`, {
      code: 'OTA_SIGNER_UNTRUSTED',
      context: { expected: certSha, found: pkg.signature.certificateSha256 },
    });
  const key = (await loadPayloadSigningKey(files.keyPk8)).key;

  await mkdir(feed, { recursive: true });
  let manifest: FeedManifest = {
    schema: 'omie.ota-feed/1',
    product: pkg.info.product,
    device: pkg.device,
    certificateSha256: certSha,
    updates: [],
  };
  if (existsSync(join(feed, MANIFEST_FILE))) {
    const current = await readManifest(feed, cert);
    for (const [field, want] of [
      ['product', manifest.product],
      ['device', manifest.device],
      ['certificateSha256', certSha],
    ] as const)
      if (current[field] !== want)
        throw new InputError(
          `the feed in ${feed} is for ${field} ${current[field]}, the package for ${want}`,
          {
            code: 'FEED_MISMATCH',
            context: { field, feed: current[field], package: want },
          },
        );
    manifest = current;
  }
  const dest = join(feed, pkg.update.filename);
  if (resolve(o.ota) !== dest) {
    if (existsSync(dest) && (await sha256File(dest)) !== pkg.update.sha256)
      throw new InputError(`${dest} already exists with other content`, {
        code: 'FEED_FILE_EXISTS',
        hint: 'give the new package another file name',
      });
    const tmp = `${dest}.tmp-${process.pid}`;
    await copyFile(o.ota, tmp);
    await rename(tmp, dest);
  }
  manifest.updates = [...manifest.updates.filter((u) => u.filename !== pkg.update.filename), pkg.update].sort(
    (a, b) =>
      b.postTimestamp - a.postTimestamp ||
      a.kind.localeCompare(b.kind) ||
      a.filename.localeCompare(b.filename),
  );
  const lineage = `${JSON.stringify(
    { response: manifest.updates.filter((u) => u.kind === 'full').map(lineageEntry) },
    null,
    2,
  )}\n`;
  const envelope = signEnvelope(MANIFEST_TYPE, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), key);
  await writeAtomically(join(feed, CERT_FILE), certPem);
  await writeAtomically(join(feed, `${manifest.device}.json`), lineage);
  await writeAtomically(join(feed, MANIFEST_FILE), `${JSON.stringify(envelope, null, 2)}\n`);
  return { feed, added: pkg.update, manifest, lineage: join(feed, `${manifest.device}.json`) };
}

/** The feed's manifest, its signature checked with `cert`. */
async function readManifest(feed: string, cert: X509Certificate): Promise<FeedManifest> {
  const path = join(feed, MANIFEST_FILE);
  let env: DsseEnvelope;
  try {
    env = JSON.parse(await readFile(path, 'utf8')) as DsseEnvelope;
  } catch (e) {
    throw new InputError(`${path} is not a signed manifest (JSON)`, { code: 'FEED_BAD_MANIFEST', cause: e });
  }
  if (env.payloadType !== MANIFEST_TYPE)
    throw new InputError(`${path} is not an Omie OTA feed manifest`, {
      code: 'FEED_BAD_MANIFEST',
      context: { expected: MANIFEST_TYPE, found: env.payloadType },
    });
  if (!verifyEnvelope(env, cert.publicKey).verified)
    throw new VerificationError('ota-feed', `${path}: the manifest's signature does not verify`, {
      code: 'FEED_SIGNATURE_INVALID',
      context: { file: path },
    });
  return JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as FeedManifest;
}

export interface FeedProblem {
  file: string;
  problem: string;
}

export interface FeedVerification {
  feed: string;
  ok: boolean;
  /** Whether the certificate came from the caller (pinned) or from the feed itself. */
  pinned: boolean;
  certificateSha256: string;
  updates: Array<FeedUpdate & { verified: boolean }>;
  problems: FeedProblem[];
}

/**
 * Checks a feed as a device or mirror would: the manifest's signature (with `certPem`, else the
 * feed's own certificate), then every package it lists (present, same size and SHA-256, signed by
 * that certificate, metadata as listed) and the Updater JSON (exactly the full packages, as listed).
 */
export async function verifyFeed(dir: string, certPem?: string): Promise<FeedVerification> {
  const feed = resolve(dir);
  const certPath = certPem ?? join(feed, CERT_FILE);
  if (!existsSync(certPath))
    throw new InputError(`no certificate to check ${feed} with: ${certPath} does not exist`, {
      code: 'FEED_NO_CERT',
    });
  const cert = new X509Certificate(await readFile(certPath));
  const certSha = createHash('sha256').update(cert.raw).digest('hex');
  const manifest = await readManifest(feed, cert);
  const problems: FeedProblem[] = [];
  const updates: FeedVerification['updates'] = [];
  if (manifest.certificateSha256 !== certSha)
    problems.push({
      file: MANIFEST_FILE,
      problem: `names certificate ${manifest.certificateSha256}, signed by ${certSha}`,
    });
  for (const u of manifest.updates) {
    const path = join(feed, u.filename);
    const before = problems.length;
    const bad = (problem: string) => problems.push({ file: u.filename, problem });
    if (basename(u.filename) !== u.filename) bad('file name is not a plain name');
    else if (!existsSync(path)) bad('listed in the manifest, missing from the feed');
    else {
      const size = (await stat(path)).size;
      if (size !== u.size) bad(`is ${size} bytes, the manifest says ${u.size}`);
      const sha = await sha256File(path);
      if (sha !== u.sha256) bad(`sha256 is ${sha}, the manifest says ${u.sha256}`);
      else
        try {
          const d = await describePackage(path, u.url.slice(0, u.url.lastIndexOf('/')), u.romtype, sha);
          if (d.signature.certificateSha256 !== certSha) bad(`signed by ${d.signature.certificateSha256}`);
          for (const k of ['kind', 'postBuild', 'postTimestamp', 'baseBuild', 'version'] as const)
            if (d.update[k] !== u[k]) bad(`${k} is ${d.update[k]}, the manifest says ${u[k]}`);
        } catch (e) {
          bad(e instanceof Error ? e.message : String(e));
        }
    }
    updates.push({ ...u, verified: problems.length === before });
  }
  const lineagePath = join(feed, `${manifest.device}.json`);
  try {
    const got = JSON.parse(await readFile(lineagePath, 'utf8')) as { response?: LineageUpdate[] };
    const want = manifest.updates.filter((u) => u.kind === 'full').map(lineageEntry);
    if (JSON.stringify(got.response) !== JSON.stringify(want))
      problems.push({
        file: basename(lineagePath),
        problem: 'does not list exactly the full packages of the manifest, as the manifest lists them',
      });
  } catch (e) {
    problems.push({
      file: basename(lineagePath),
      problem: `unreadable: ${e instanceof Error ? e.message : e}`,
    });
  }
  return {
    feed,
    ok: problems.length === 0,
    pinned: Boolean(certPem),
    certificateSha256: certSha,
    updates,
    problems,
  };
}
