/**
 * recovery's package checks (formats/ota/install-checks.ts) against AOSP's CheckPackageMetadata
 * and CheckAbSpecificMetadata, case by case, and the way a host reads a refusal back from the
 * lines recovery logs.
 */
import { describe, expect, it } from 'vitest';
import {
  checkPackageMetadata,
  checkPayloadTimestamp,
  refusalFromLog,
  runningBuild,
} from '../../scripts/formats/ota/install-checks.ts';

const running = runningBuild({
  'ro.product.device': 'tablet',
  'ro.build.fingerprint': 'Omie/omie_tablet/tablet:14/UQ1A/1:user/release-keys',
  'ro.build.version.incremental': '1',
  'ro.build.date.utc': '1707134400',
  'ro.serialno': 'OMIE0001',
});
const full = {
  'ota-type': 'AB',
  'pre-device': 'tablet',
  'post-build': 'Omie/omie_tablet/tablet:14/UQ1A/2:user/release-keys',
  'post-timestamp': '1707220800',
};

describe('checkPackageMetadata', () => {
  it('takes a full package for this device, newer or as new as the running build', () => {
    expect(checkPackageMetadata(full, running)).toBeUndefined();
    // The same build again is allowed (to repair the running copy).
    expect(checkPackageMetadata({ ...full, 'post-timestamp': '1707134400' }, running)).toBeUndefined();
  });

  it('refuses each thing recovery refuses, in its order, with its words', () => {
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [
        { ...full, 'ota-type': 'BLOCK' },
        'OTA_NOT_AB',
        /^Unexpected ota package type, expects AB, actual BLOCK$/,
      ],
      [
        { ...full, 'pre-device': 'phablet' },
        'OTA_WRONG_DEVICE',
        /^Package is for product phablet but expected tablet$/,
      ],
      // recovery compares the whole string: a "|" list is not a list for A/B packages.
      [
        { ...full, 'pre-device': 'tablet|phablet' },
        'OTA_WRONG_DEVICE',
        /^Package is for product tablet\|phablet/,
      ],
      [{ ...full, serialno: 'OTHER1|OTHER2' }, 'OTA_WRONG_SERIAL', /^Package is for serial OTHER1\|OTHER2$/],
      [
        { ...full, 'pre-build-incremental': '0' },
        'OTA_WRONG_SOURCE_BUILD',
        /^Package is for source build 0 but expected 1$/,
      ],
      [
        { ...full, 'pre-build': 'other/fp' },
        'OTA_WRONG_SOURCE_BUILD',
        /^Package is for source build other\/fp but expected Omie/,
      ],
      [
        { ...full, 'post-timestamp': '1707048000' },
        'OTA_DOWNGRADE',
        /^Update package is older than the current build, expected a build newer than timestamp 1707134400 but package has timestamp 1707048000 and downgrade not allowed\.$/,
      ],
      [{ ...full, 'post-timestamp': 'soon' }, 'OTA_DOWNGRADE', /package has timestamp 0 /],
      [
        { ...full, 'post-timestamp': '1', 'ota-downgrade': 'yes' },
        'OTA_DOWNGRADE',
        /^Downgrade package must have a pre-build version set, not allowed\.$/,
      ],
    ];
    for (const [meta, code, log] of cases) {
      const r = checkPackageMetadata(meta, running);
      expect(r?.code, JSON.stringify(meta)).toBe(code);
      expect(r?.log).toMatch(log);
      // The host reads the same refusal back from recovery's log line.
      expect(
        refusalFromLog(`Installing update...\nE:${r?.log}\nInstall from ADB complete (status: 1).`),
      ).toEqual({
        code,
        line: r?.log,
      });
    }
  });

  it('takes a serial list holding the device, an incremental from its build, a downgrade the package allows', () => {
    expect(checkPackageMetadata({ ...full, serialno: 'X | OMIE0001' }, running)).toBeUndefined();
    expect(
      checkPackageMetadata(
        { ...full, 'pre-build': running.fingerprint, 'pre-build-incremental': '1' },
        running,
      ),
    ).toBeUndefined();
    expect(
      checkPackageMetadata(
        { ...full, 'post-timestamp': '1', 'ota-downgrade': 'yes', 'pre-build': running.fingerprint },
        running,
      ),
    ).toBeUndefined();
  });

  it('a device that does not say its build date takes no package (recovery reads the largest timestamp)', () => {
    const undated = runningBuild({ 'ro.product.device': 'tablet' });
    expect(undated.timestamp).toBeUndefined();
    expect(checkPackageMetadata(full, undated)?.code).toBe('OTA_DOWNGRADE');
  });
});

describe("update_engine's timestamp rule and the log", () => {
  it('refuses a payload whose max_timestamp is older than the running build', () => {
    expect(checkPayloadTimestamp(1707134400, running)).toBeUndefined();
    expect(checkPayloadTimestamp(undefined, running)).toBeUndefined();
    const r = checkPayloadTimestamp(1707048000, running);
    expect(r).toMatchObject({ code: 'OTA_DOWNGRADE', field: 'max_timestamp' });
    expect(r?.log).toBe(
      'The current OS build timestamp (1707134400) is newer than the maximum timestamp in the manifest (1707048000)',
    );
  });

  it("reads update_engine's error codes and recovery's signature failure back; says nothing of other lines", () => {
    const ue = (name: string) => `E:update_engine_sideload: ErrorCode::${name} (0): detail`;
    expect(refusalFromLog(ue('kDownloadStateInitializationError'))?.code).toBe(
      'PAYLOAD_SOURCE_HASH_MISMATCH',
    );
    expect(refusalFromLog(ue('kDownloadPayloadPubKeyVerificationError'))?.code).toBe(
      'PAYLOAD_SIGNATURE_INVALID',
    );
    expect(refusalFromLog(ue('kDownloadMetadataSignatureMismatch'))?.code).toBe('PAYLOAD_SIGNATURE_INVALID');
    expect(refusalFromLog(ue('kPayloadTimestampError'))?.code).toBe('OTA_DOWNGRADE');
    expect(refusalFromLog(ue('kNewRootfsVerificationError'))?.code).toBe('PAYLOAD_PARTITION_HASH_MISMATCH');
    expect(refusalFromLog(ue('kNotEnoughSpace'))?.code).toBe('OTA_NO_SPACE');
    expect(refusalFromLog('[  3.2] E:Signature verification failed\nE:error: 21')?.code).toBe(
      'OTA_SIGNER_UNTRUSTED',
    );
    expect(refusalFromLog('E:Error in /sideload/package.zip (status 1)')).toBeUndefined();
    expect(refusalFromLog('')).toBeUndefined();
  });
});
