/**
 * The virtual device against Debian's real adb and fastboot clients (the oracles): connect, shell
 * (v2 exit codes), getprop/pm/settings answered from flashed images, push/pull, authorisation, and
 * reboot into the bootloader where the real fastboot client takes over.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApk } from '../../scripts/apkgen/index.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { parseAdbPublicKey } from '../../scripts/sim/adb-packet.ts';
import { type SimHandle, startSim } from '../../scripts/sim/index.ts';
import { defaultSimProfile } from '../../scripts/sim/state.ts';
import { workDir } from '../helpers.ts';
import { type RealAdb, startRealAdb } from './real-adb.ts';

const dir = workDir('sim');
let adb: RealAdb;
let sim: SimHandle;
let serial: string;

/** Builds an ext4 (or erofs) image of `tree` into the current slot's partition. */
async function flash(name: string, fs: 'ext4' | 'erofs', tree: string): Promise<void> {
  const tmp = sim.state.tempPath(`test-${name}`);
  if (fs === 'ext4') await runTool('mke2fs', ['-q', '-t', 'ext4', '-d', tree, tmp, '16M']);
  else await runTool('mkfs.erofs', ['--quiet', tmp, tree]);
  await sim.state.commitPartition(`${name}_${sim.state.info.currentSlot}`, null, tmp);
}

beforeAll(async () => {
  adb = await startRealAdb(dir);
  const stateDir = join(dir, `state-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  sim = await startSim({ stateDir, profile: defaultSimProfile({ serial: 'SIMREAL01' }) });
  serial = `127.0.0.1:${sim.adbPort}`;
  const c = await adb.run(['connect', serial]);
  expect(c.stdout).toContain(`connected to ${serial}`);
  await adb.waitState(serial, 'device');
}, 60_000);

afterAll(async () => {
  await adb?.stop();
  await sim?.close();
});

const sh = (cmd: string) => adb.run(['-s', serial, 'shell', cmd]);

describe('sim adbd with the real adb client', () => {
  it('shows as a device with the banner product, model and device', async () => {
    const r = await adb.run(['devices', '-l']);
    expect(r.stdout).toMatch(
      new RegExp(
        `${serial.replace(/\./g, '\\.')}\\s+device product:omie_tablet model:omie_tablet device:omie_tablet`,
      ),
    );
    const features = await adb.run(['-s', serial, 'features']);
    expect(features.stdout).toContain('shell_v2');
  });

  it('answers getprop from the profile when nothing is flashed', async () => {
    const all = await sh('getprop');
    expect(all.exitCode).toBe(0);
    expect(all.stdout).toContain('[ro.product.name]: [omie_tablet]');
    expect(all.stdout).toContain('[ro.boot.slot_suffix]: [_a]');
    expect(all.stdout).toContain('[ro.serialno]: [SIMREAL01]');
    const lines = all.stdout.trim().split('\n');
    expect(lines.every((l) => /^\[[^\]]+\]: \[.*\]$/.test(l))).toBe(true);
    expect((await sh('getprop ro.boot.flash.locked')).stdout.trim()).toBe('0');
    expect((await sh('getprop ro.boot.verifiedbootstate')).stdout.trim()).toBe('orange');
    expect((await sh('getprop no.such.prop fallback')).stdout.trim()).toBe('fallback');
  });

  it('carries shell v2 exit codes and stderr through the real client', async () => {
    expect((await sh('true')).exitCode).toBe(0);
    expect((await sh('false')).exitCode).toBe(1);
    expect((await sh('exit 3')).exitCode).toBe(3);
    const nf = await sh('frobnicate --now');
    expect(nf.exitCode).toBe(127);
    expect(nf.stderr).toContain('frobnicate: not found');
    const chain = await sh('false; echo "status=$?" && echo \'single $?\' || echo never');
    expect(chain.stdout).toBe('status=1\nsingle $?');
    expect((await sh('getprop | grep -c ro.product.name')).stdout.trim()).toBe('1');
    expect((await sh('id')).stdout).toContain('uid=2000(shell)');
  });

  it('runs an interactive shell fed from a pipe (no prompt without a pty) and reports `exit N`', async () => {
    const r = await adb.run(
      ['-s', serial, 'shell'],
      20_000,
      'getprop ro.serialno\nfalse\necho "last=$?"\nexit 4\necho never\n',
    );
    expect(r.stdout).toBe('SIMREAL01\nlast=1');
    expect(r.exitCode).toBe(4);
    const root = await adb.run(['-s', serial, 'root']);
    expect(root.stdout).toContain('adbd cannot run as root in production builds');
  });

  it('settings get/put round-trips and unknown keys read "null"', async () => {
    expect((await sh('settings get global adb_enabled')).stdout.trim()).toBe('1');
    expect((await sh('settings get secure no_such_key')).stdout.trim()).toBe('null');
    expect((await sh('settings put system screen_brightness 77')).exitCode).toBe(0);
    expect((await sh('settings get system screen_brightness')).stdout.trim()).toBe('77');
  });

  it('push and pull with the real client keep bytes intact; /system is read-only', async () => {
    const local = join(dir, 'push.bin');
    const data = randomBytes(300 * 1024 + 17);
    writeFileSync(local, data);
    const p = await adb.run(['-s', serial, 'push', local, '/sdcard/Download/push.bin']);
    expect(p.exitCode, p.stderr).toBe(0);
    const back = join(dir, 'pulled.bin');
    rmSync(back, { force: true });
    const q = await adb.run(['-s', serial, 'pull', '/sdcard/Download/push.bin', back]);
    expect(q.exitCode, q.stderr).toBe(0);
    expect(readFileSync(back).equals(data)).toBe(true);
    expect((await sh('ls /sdcard/Download')).stdout).toContain('push.bin');
    // The same file through /storage/emulated/0 and /data/media/0.
    expect(
      (await sh('ls /storage/emulated/0/Download /data/media/0/Download')).stdout.match(/push\.bin/g),
    ).toHaveLength(2);
    const ro = await adb.run(['-s', serial, 'push', local, '/system/push.bin']);
    expect(ro.exitCode).not.toBe(0);
    const missing = await adb.run(['-s', serial, 'pull', '/sdcard/none.bin', back]);
    expect(missing.exitCode).not.toBe(0);
  }, 30_000);

  it('after a flash answers from the flashed system (ext4) and product (erofs) images', async () => {
    const sysTree = join(dir, 'sys-tree');
    rmSync(sysTree, { recursive: true, force: true });
    mkdirSync(join(sysTree, 'system/app/Hello'), { recursive: true });
    mkdirSync(join(sysTree, 'system/priv-app/Cloud'), { recursive: true });
    writeFileSync(
      join(sysTree, 'system/build.prop'),
      '# from the flashed image\nro.product.model=Flashed Tablet\nro.build.version.sdk=33\nro.build.fingerprint=omie/omie_tablet/tablet:14/UQ1A/1:user/release-keys\n',
    );
    await buildApk(
      { package: 'org.omie.hello', versionCode: 1, label: 'Hello' },
      null,
      join(sysTree, 'system/app/Hello/Hello.apk'),
    );
    await buildApk(
      { package: 'org.omie.cloud', versionCode: 2, label: 'Cloud' },
      null,
      join(sysTree, 'system/priv-app/Cloud/Cloud.apk'),
    );
    await flash('system', 'ext4', sysTree);

    const prodTree = join(dir, 'prod-tree');
    rmSync(prodTree, { recursive: true, force: true });
    mkdirSync(join(prodTree, 'etc'), { recursive: true });
    mkdirSync(join(prodTree, 'app/Notes'), { recursive: true });
    writeFileSync(
      join(prodTree, 'etc/build.prop'),
      'ro.product.product.name=omie_tablet\nro.build.version.sdk=34\n',
    );
    await buildApk(
      { package: 'org.omie.notes', versionCode: 1, label: 'Notes' },
      null,
      join(prodTree, 'app/Notes/Notes.apk'),
    );
    await flash('product', 'erofs', prodTree);

    expect((await sh('getprop ro.product.model')).stdout.trim()).toBe('Flashed Tablet');
    // product's build.prop loads after system's and overrides it.
    expect((await sh('getprop ro.build.version.sdk')).stdout.trim()).toBe('34');
    const pkgs = await sh('pm list packages -f');
    expect(pkgs.exitCode).toBe(0);
    const lines = pkgs.stdout.trim().split('\n').sort();
    expect(lines).toEqual(
      [
        'package:/product/app/Notes/Notes.apk=org.omie.notes',
        'package:/system/app/Hello/Hello.apk=org.omie.hello',
        'package:/system/priv-app/Cloud/Cloud.apk=org.omie.cloud',
      ].sort(),
    );
    // The package name each line reports is what aapt (the oracle) reads from that APK.
    const badging = await runTool('aapt', [
      'dump',
      'badging',
      join(sysTree, 'system/priv-app/Cloud/Cloud.apk'),
    ]);
    expect(badging.stdout).toContain("package: name='org.omie.cloud'");
    expect((await sh('pm path org.omie.hello')).stdout.trim()).toBe('package:/system/app/Hello/Hello.apk');
    expect((await sh('pm path org.nope')).exitCode).toBe(1);
    expect((await sh('pm list packages -3')).stdout).toBe('');
    expect((await sh('cat /system/build.prop')).stdout).toContain('ro.product.model=Flashed Tablet');
    expect((await sh('ls /system/app')).stdout.trim()).toBe('Hello');
    // Pull an APK out of the flashed image: same bytes as built.
    const out = join(dir, 'pulled.apk');
    rmSync(out, { force: true });
    const pull = await adb.run(['-s', serial, 'pull', '/product/app/Notes/Notes.apk', out]);
    expect(pull.exitCode, pull.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(join(prodTree, 'app/Notes/Notes.apk')))).toBe(true);
  }, 90_000);

  it('adb install streams an APK into /data/app; pm lists it as third-party; pm uninstall removes it', async () => {
    const apk = join(dir, 'user.apk');
    await buildApk({ package: 'org.omie.user', versionCode: 3, label: 'User' }, null, apk);
    const r = await adb.run(['-s', serial, 'install', apk], 60_000);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('Success');
    expect((await sh('pm list packages -3')).stdout.trim()).toBe('package:org.omie.user');
    expect((await sh('pm path org.omie.user')).stdout.trim()).toMatch(
      /^package:\/data\/app\/~~[\w-]{22}==\/org\.omie\.user-[\w-]{22}==\/base\.apk$/,
    );
    const bad = join(dir, 'not-an.apk');
    writeFileSync(bad, 'nope');
    const refused = await adb.run(['-s', serial, 'install', bad], 60_000);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain('INSTALL_PARSE_FAILED_NOT_APK');
    expect((await sh('pm uninstall org.omie.user')).stdout.trim()).toBe('Success');
    expect((await sh('pm list packages -3')).stdout).toBe('');
  }, 60_000);

  it('reboot bootloader hands over to fastboot (real client), and fastboot reboot brings adb back', async () => {
    const r = await adb.run(['-s', serial, 'reboot', 'bootloader']);
    expect(r.exitCode, r.stderr).toBe(0);
    await sim.state.reload();
    expect(sim.state.info.mode).toBe('bootloader');
    const fb = await execa('fastboot', ['-s', `tcp:127.0.0.1:${sim.fastbootPort}`, 'getvar', 'product'], {
      reject: false,
      timeout: 20_000,
    });
    expect(fb.stderr).toContain('product: omie_tablet');
    // adb is refused while the device sits in the bootloader.
    let refused = await sh('true');
    for (let i = 0; i < 25 && refused.exitCode === 0; i++) {
      await new Promise((res) => setTimeout(res, 200));
      refused = await sh('true');
    }
    expect(refused.exitCode).not.toBe(0);
    const back = await execa('fastboot', ['-s', `tcp:127.0.0.1:${sim.fastbootPort}`, 'reboot'], {
      reject: false,
      timeout: 20_000,
    });
    expect(back.exitCode, back.stderr).toBe(0);
    await new Promise((res) => setTimeout(res, 500));
    await sim.state.reload();
    expect(sim.state.info.mode).toBe('adb');
    await adb.reconnect(serial, 'device');
    expect((await sh('getprop ro.serialno')).stdout.trim()).toBe('SIMREAL01');
  }, 60_000);
});

describe('sim adbd authorisation with the real adb client', () => {
  let locked: SimHandle;
  let lockedSerial: string;

  beforeAll(async () => {
    const stateDir = join(dir, `state-auth-${process.pid}`);
    rmSync(stateDir, { recursive: true, force: true });
    locked = await startSim({
      stateDir,
      profile: defaultSimProfile({ serial: 'SIMAUTH01', adbAuthRequired: true }),
    });
    lockedSerial = `127.0.0.1:${locked.adbPort}`;
  }, 30_000);
  afterAll(async () => {
    await locked?.close();
  });

  it('an unknown key stays unauthorized and shell is refused; once listed, the key is accepted', async () => {
    await adb.run(['connect', lockedSerial]);
    await adb.waitState(lockedSerial, 'unauthorized');
    const r = await adb.run(['-s', lockedSerial, 'shell', 'id']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('unauthorized');
    expect(locked.state.info.adbAuthorized).toEqual([]);

    // The user "allows" this computer: its key fingerprint (MD5 of the key, as the dialog shows it).
    const pub = parseAdbPublicKey(readFileSync(join(adb.home, '.android/adbkey.pub'), 'utf8'));
    await locked.state.update((d) => {
      d.adbAuthorized = [pub.fingerprint];
    });
    await adb.reconnect(lockedSerial, 'device');
    expect((await adb.run(['-s', lockedSerial, 'shell', 'getprop ro.serialno'])).stdout.trim()).toBe(
      'SIMAUTH01',
    );
    // The key is now in adb_keys: the next connection authenticates by signature.
    expect(readFileSync(join(locked.stateDir, 'adb_keys'), 'utf8')).toContain(pub.line.split(' ')[0]);
    await adb.run(['disconnect', lockedSerial]);
    const again = await adb.run(['connect', lockedSerial]);
    expect(again.stdout).toContain('connected to');
    expect(again.stdout + again.stderr).not.toContain('failed to authenticate');
    await adb.waitState(lockedSerial, 'device');
    await adb.run(['disconnect', lockedSerial]);
  }, 60_000);

  it('another computer with its own key stays unauthorized on the same device', async () => {
    const other = await startRealAdb(dir);
    try {
      await other.run(['connect', lockedSerial]);
      await other.waitState(lockedSerial, 'unauthorized');
      const r = await other.run(['-s', lockedSerial, 'shell', 'id']);
      expect(r.exitCode).not.toBe(0);
      expect(locked.state.info.adbAuthorized).toHaveLength(1);
    } finally {
      await other.stop();
    }
  }, 60_000);
});
