/**
 * apex_manifest.pb (AOSP system/apex/proto/apex_manifest.proto, protobuf) and its Android 10
 * predecessor apex_manifest.json: an APEX's name (its mount point /apex/<name>) and version.
 * The schema is loaded with protobufjs on first use, from the .proto beside this file.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Type } from 'protobufjs';
import { FormatError } from '../../errors.ts';

export interface ApexManifest {
  /** Identifies the APEX and names its mount point; may differ from the container's package. */
  name: string;
  version: number;
  versionName: string;
  preInstallHook: string;
  noCode: boolean;
  provideNativeLibs: string[];
  requireNativeLibs: string[];
  jniLibs: string[];
  /** Compressed APEX only: hashtree root digest (hex) of the payload of the APEX inside. */
  originalApexDigest: string | null;
  supportsRebootlessUpdate: boolean;
  vndkVersion: string;
  bootstrap: boolean;
}

let manifestType: Type | undefined;

function apexManifestType(): Type {
  if (manifestType) return manifestType;
  const protobuf = createRequire(import.meta.url)('protobufjs') as typeof import('protobufjs');
  manifestType = protobuf
    .loadSync(fileURLToPath(new URL('./apex_manifest.proto', import.meta.url)))
    .lookupType('apex.proto.ApexManifest');
  return manifestType;
}

/** A valid APEX name (apexd's rule is a package name; the build refuses anything else). */
const APEX_NAME = /^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$/;

function checkName(name: string, format: string, file?: string): void {
  if (!APEX_NAME.test(name))
    throw new FormatError({
      format,
      reason: name ? 'name is not a package-style APEX name' : 'name is missing',
      field: 'name',
      expected: 'a name like com.android.tzdata',
      found: name,
      file,
    });
}

/** Decodes apex_manifest.pb. */
export function parseApexManifest(buf: Buffer, file?: string): ApexManifest {
  const T = apexManifestType();
  let o: Record<string, unknown>;
  try {
    o = T.toObject(T.decode(buf), { longs: Number, defaults: true, arrays: true }) as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(
      { format: 'apex_manifest', reason: `not an ApexManifest protobuf: ${(e as Error).message}`, file },
      { cause: e },
    );
  }
  const version = o.version as number;
  if (!Number.isSafeInteger(version) || version < 0)
    throw new FormatError({
      format: 'apex_manifest',
      reason: 'version out of range',
      field: 'version',
      expected: 'an integer from 0 to 2^53-1',
      found: String(o.version),
      file,
    });
  const m: ApexManifest = {
    name: o.name as string,
    version,
    versionName: o.versionName as string,
    preInstallHook: o.preInstallHook as string,
    noCode: o.noCode as boolean,
    provideNativeLibs: o.provideNativeLibs as string[],
    requireNativeLibs: o.requireNativeLibs as string[],
    jniLibs: o.jniLibs as string[],
    originalApexDigest:
      ((o.capexMetadata as { originalApexDigest?: string } | null)?.originalApexDigest ?? '') || null,
    supportsRebootlessUpdate: o.supportsRebootlessUpdate as boolean,
    vndkVersion: o.vndkVersion as string,
    bootstrap: Boolean(o.bootstrap) || Boolean(o.vendorBootstrap),
  };
  checkName(m.name, 'apex_manifest', file);
  return m;
}

/** Android 10's apex_manifest.json (`{"name": …, "version": …}`), still read by apexd as a fallback. */
export function parseApexManifestJson(text: string, file?: string): ApexManifest {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(
      { format: 'apex_manifest.json', reason: `not JSON: ${(e as Error).message}`, file },
      { cause: e },
    );
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw new FormatError({ format: 'apex_manifest.json', reason: 'not a JSON object', file });
  const name = typeof o.name === 'string' ? o.name : '';
  checkName(name, 'apex_manifest.json', file);
  const version = o.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0)
    throw new FormatError({
      format: 'apex_manifest.json',
      reason: 'version is not a non-negative integer',
      field: 'version',
      found: String(version),
      file,
    });
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  return {
    name,
    version,
    versionName: typeof o.versionName === 'string' ? o.versionName : '',
    preInstallHook: typeof o.preInstallHook === 'string' ? o.preInstallHook : '',
    noCode: o.noCode === true,
    provideNativeLibs: strings(o.provideNativeLibs),
    requireNativeLibs: strings(o.requireNativeLibs),
    jniLibs: strings(o.jniLibs),
    originalApexDigest: null,
    supportsRebootlessUpdate: false,
    vndkVersion: '',
    bootstrap: false,
  };
}

/** Encodes apex_manifest.pb (fields left out are proto3 defaults). */
export function encodeApexManifest(
  m: Pick<ApexManifest, 'name' | 'version'> & Partial<Omit<ApexManifest, 'name' | 'version'>>,
): Buffer {
  checkName(m.name, 'apex_manifest');
  const T = apexManifestType();
  const { originalApexDigest, ...rest } = m;
  const msg = T.fromObject({
    ...rest,
    ...(originalApexDigest ? { capexMetadata: { originalApexDigest } } : {}),
  });
  return Buffer.from(T.encode(msg).finish());
}
