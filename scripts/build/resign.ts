/**
 * Re-signing a kept base APK with the partner key (AOSP's release signing does the same for
 * APKs built with the test keys): in process where the kit's signer can, apksigner elsewhere.
 */
import { type SigningKey, signApk } from '../apkgen/index.ts';
import { InputError } from '../errors.ts';
import { resignApkFile } from '../formats/apk/signing/resign.ts';
import { loadApkSigningKey } from '../formats/apk/signing/sign.ts';

/** What the in-process re-signer leaves to apksigner (see resignApkFile). */
const APKSIGNER_CASES = new Set(['APK_RESIGN_NEEDS_V1', 'APK_NOT_ALIGNED', 'APK_RESIGN_TOO_LARGE']);

/**
 * Re-signs a test-key APK with the partner key: in process (v2, as `apksigner sign` does for
 * minSdk >= 24: no JVM per APK, and a test-key-signed base may have a hundred), else with
 * apksigner, v1 + v2 as AOSP release signing of base APKs.
 */
export async function resignApk(original: string, resigned: string, key: SigningKey): Promise<void> {
  try {
    await resignApkFile(original, resigned, await loadApkSigningKey(key));
  } catch (e) {
    if (!(e instanceof InputError && APKSIGNER_CASES.has(e.code))) throw e;
    await signApk(original, resigned, { key, v1: true, v2: true, v3: false });
  }
}
