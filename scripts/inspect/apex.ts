import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APEX_MANIFEST_JSON, APEX_MANIFEST_PB, APEX_PAYLOAD, CAPEX_ORIGINAL } from '../formats/apex/index.ts';
import { ZipArchive } from '../formats/apk/zip.ts';
import { openApex } from '../fs/apex.ts';
import type { Detector } from './detect.ts';

export interface ApexReport {
  name: string;
  /** The container's package (what PackageManager lists). */
  package: string | null;
  version: number;
  versionName: string;
  compressed: boolean;
  payloadKey: { sha256: string | null; publicTestKey: string | null };
  container: { verified: boolean; signers: string[]; error?: string };
  payload: {
    fsType: string | null;
    algorithm: string;
    signed: boolean;
    keyMatchesApexPubkey: boolean;
    partitionName: string | null;
    rootDigest: string | null;
    problems: string[];
    apks: string[];
    jars: string[];
  } | null;
  payloadError?: string;
}

/**
 * APEX / CAPEX: a zip holding apex_manifest.pb (or Android 10's .json) and a payload
 * (apex_payload.img, or original_apex when compressed). Before the APK detector: an APEX
 * container has an AndroidManifest.xml too.
 */
export const apexDetector: Detector<ApexReport> = {
  kind: 'apex',
  async detect(s) {
    if (!s.tail.includes(Buffer.from('PK\x05\x06', 'latin1'))) return false;
    try {
      const z = await ZipArchive.openFile(s.path);
      try {
        const manifest = z.entry(APEX_MANIFEST_PB) ?? z.entry(APEX_MANIFEST_JSON);
        return Boolean(manifest && (z.entry(APEX_PAYLOAD) ?? z.entry(CAPEX_ORIGINAL)));
      } finally {
        await z.close();
      }
    } catch {
      return false;
    }
  },
  async inspect(path) {
    const work = await mkdtemp(join(tmpdir(), 'omie-inspect-apex-'));
    try {
      const a = await openApex(path, join(work, 'apex'));
      try {
        const i = a.info;
        return {
          name: i.name,
          package: i.packageName,
          version: i.version,
          versionName: i.versionName,
          compressed: i.compressed,
          payloadKey: { sha256: i.publicKeySha256, publicTestKey: i.publicTestKey },
          container: i.container,
          payload: a.payload && {
            fsType: a.payload.fsType,
            algorithm: a.payload.algorithm,
            signed: a.payload.signed,
            keyMatchesApexPubkey: a.payload.keyMatchesApexPubkey,
            partitionName: a.payload.partitionName,
            rootDigest: a.payload.rootDigest,
            problems: a.payload.problems,
            apks: a.apks,
            jars: a.jars,
          },
          ...(a.payloadError ? { payloadError: a.payloadError } : {}),
        };
      } finally {
        await a.close();
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  },
  human(r) {
    const lines = [
      `  APEX ${r.name} version ${r.version}${r.versionName ? ` (${r.versionName})` : ''}${r.compressed ? ', compressed (.capex)' : ''}`,
      `  container package: ${r.package ?? '(none)'}; signature ${r.container.verified ? 'verifies' : `does NOT verify${r.container.error ? `: ${r.container.error}` : ''}`}`,
      ...r.container.signers.map((s) => `    signer SHA-256 ${s}`),
      `  payload key (apex_pubkey) SHA-256: ${r.payloadKey.sha256 ?? '(none)'}${r.payloadKey.publicTestKey ? `  — the AVB public test key ${r.payloadKey.publicTestKey}` : ''}`,
    ];
    if (r.payloadError) lines.push(`  payload: unreadable: ${r.payloadError}`);
    if (r.payload) {
      const p = r.payload;
      lines.push(
        `  payload: ${p.fsType ?? 'unknown filesystem'}, ${p.algorithm}${p.signed ? ' signed' : ''}, hashtree of "${p.partitionName ?? '?'}", root digest ${p.rootDigest ?? '?'}`,
        ...p.problems.map((x) => `    problem: ${x}`),
        `  contents: ${p.apks.length} APK(s), ${p.jars.length} jar(s)`,
        ...[...p.apks, ...p.jars].map((x) => `    ${x}`),
      );
    }
    return lines.join('\n');
  },
};
