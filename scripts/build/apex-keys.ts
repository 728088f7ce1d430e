/**
 * APEXes signed with public test keys. An APEX carries two signatures (apexer; AOSP's
 * sign_target_files_apks re-signs both from apexkeys.txt): the container's, an APK signature, and
 * the payload's, an AVB hashtree footer whose key is the apex_pubkey entry. Anyone holding a test
 * key can make an "update" of such an APEX that apexd accepts over the pre-installed one, so a
 * release image must not ship one. The build does not re-sign APEXes (that means rebuilding the
 * payload's AVB footer and re-signing the APKs inside it): it names them and refuses, so nothing
 * signed with a public key is left in place silently.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readApexInfo } from '../formats/apex/index.ts';
import { defaultKnownSigners } from '../formats/apk/known-signers.ts';
import type { FsReader } from '../fs/types.ts';
import { type Plan, planFiles } from './plan.ts';

export interface TestKeyApex {
  partition: string;
  /** Path inside the partition image. */
  path: string;
  /** The public test keys it is signed with: "container: AOSP platform test key", "payload: testkey_rsa4096". */
  keys: string[];
}

/**
 * The public test keys one APEX file is signed with (container certificate, apex_pubkey), or
 * none. A file that is not a readable APEX is not judged here (apexd would not activate it).
 */
export async function apexTestKeys(file: string): Promise<string[]> {
  let info: Awaited<ReturnType<typeof readApexInfo>>;
  try {
    info = await readApexInfo(file);
  } catch {
    return [];
  }
  const known = defaultKnownSigners();
  const keys: string[] = [];
  for (const s of info.container.signers) {
    const k = known.lookup(s);
    if (k?.kind === 'public-test-key') keys.push(`container: ${k.name}`);
  }
  if (info.publicTestKey) keys.push(`payload: AVB ${info.publicTestKey}`);
  return keys;
}

/** Every APEX (.apex, .capex) of the planned partitions that a public test key signs. */
export async function testKeyApexes(
  plan: Plan,
  readers: Map<string, FsReader>,
  work: string,
): Promise<TestKeyApex[]> {
  const out: TestKeyApex[] = [];
  const dir = join(work, 'apex-keys');
  await mkdir(dir, { recursive: true });
  for await (const f of planFiles(plan, readers, (path) => /\/apex\/[^/]+\.c?apex$/.test(path))) {
    const host = join(dir, 'probe.apex');
    await f.fs.copyOut(f.path, host);
    const keys = await apexTestKeys(host);
    await rm(host, { force: true });
    if (keys.length) out.push({ partition: f.part.partition, path: f.path, keys });
  }
  return out;
}
