/**
 * Reads the ApexFacts the checks need from an opened APEX (scripts/fs/apex.ts): container
 * identity and signers, the payload key and what apexd would refuse, the APKs inside (the view
 * scans them like any other APK) and the DEX classes of its jars (for the tracker check).
 */
import { asOmieError } from '../errors.ts';
import { dexEntryNames, parseDexClasses } from '../formats/apk/dex.ts';
import { bufferSource, ZipArchive } from '../formats/apk/zip.ts';
import type { OpenedApex } from '../fs/apex.ts';
import type { ApexFacts } from './view.ts';

/** Largest jar (and DEX in it) whose classes are listed; bigger ones are reported as an error. */
const MAX_JAR = 256 * 1024 * 1024;

async function jarClasses(bytes: Buffer, name: string): Promise<string[]> {
  const zip = await ZipArchive.open(bufferSource(bytes, name));
  const out: string[] = [];
  for (const dex of dexEntryNames(zip.entries.map((e) => e.name))) {
    const e = zip.entry(dex);
    if (e) out.push(...parseDexClasses(await zip.read(e, MAX_JAR), `${name}!${dex}`).classes);
  }
  return out;
}

export async function readApexFacts(a: OpenedApex): Promise<ApexFacts> {
  const jars: ApexFacts['jars'] = [];
  for (const j of a.jars) {
    const path = j.replace(/^\/+/, '');
    try {
      const st = await a.fs?.stat(j);
      if (!a.fs || !st || st.size > MAX_JAR) throw new Error(`jar of ${st?.size ?? '?'} bytes not read`);
      jars.push({ path, classes: await jarClasses(await a.fs.readFile(j), `${a.info.file}!${path}`) });
    } catch (e) {
      jars.push({ path, classes: [], error: asOmieError(e).message });
    }
  }
  const problems = [...(a.payload?.problems ?? [])];
  if (a.payloadError) problems.push(a.payloadError);
  // apex_pubkey, or the key the payload is really signed with when that differs (a problem too).
  const testKey = a.info.publicTestKey ?? a.payload?.publicTestKey;
  return {
    name: a.info.name,
    package: a.info.packageName ?? a.info.name,
    version: a.info.version,
    versionName: a.info.versionName,
    compressed: a.info.compressed,
    payloadKeySha256: a.info.publicKeySha256,
    ...(testKey ? { payloadTestKey: testKey } : {}),
    signing: {
      verified: a.info.container.verified,
      signerSha256: a.info.container.signers,
      ...(a.info.container.error ? { error: a.info.container.error } : {}),
    },
    payloadProblems: problems,
    ...(a.payload?.fsType ? { payloadFs: a.payload.fsType } : {}),
    apks: a.apks.map((p) => p.replace(/^\/+/, '')),
    jars,
  };
}
