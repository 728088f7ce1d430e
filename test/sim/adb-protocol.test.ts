/**
 * The sim's adbd at the wire level: packet codec, Android RSA key format (checked against keys the
 * real adb generates), AUTH token/signature/public-key flow, shell v1/v2, sync v1/v2, sideload,
 * and fuzzing of the packet parser, the running server and the shell interpreter.
 */
import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  privateEncrypt,
} from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import {
  A_AUTH,
  A_CLSE,
  A_CNXN,
  A_OKAY,
  A_OPEN,
  A_WRTE,
  ADB_AUTH_RSAPUBLICKEY,
  ADB_AUTH_SIGNATURE,
  ADB_AUTH_TOKEN,
  AdbPacketReader,
  encodeAdbPublicKey,
  encodePacket,
  parseAdbPublicKey,
  SHA1_DIGEST_INFO,
} from '../../scripts/sim/adb-packet.ts';
import { startAdbServer } from '../../scripts/sim/adb-server.ts';
import { runShell } from '../../scripts/sim/adb-shell.ts';
import { defaultSimProfile, SimState } from '../../scripts/sim/state.ts';
import { DeviceView } from '../../scripts/sim/view.ts';
import { mutate, prng, workDir } from '../helpers.ts';
import { decodeShellV2, syncRequest, WireClient } from './adb-wire.ts';
import { startRealAdb } from './real-adb.ts';

const dir = workDir('sim');
let state: SimState;
let server: Awaited<ReturnType<typeof startAdbServer>>;

beforeAll(async () => {
  const stateDir = join(dir, `wire-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  state = await SimState.create(stateDir, defaultSimProfile({ serial: 'WIRE0001' }));
  server = await startAdbServer({ state, port: 0 });
});
afterAll(async () => {
  await server?.close();
});

function sign(priv: KeyObject, token: Buffer): Buffer {
  return privateEncrypt(
    { key: priv, padding: constants.RSA_PKCS1_PADDING },
    Buffer.concat([SHA1_DIGEST_INFO, token]),
  );
}

describe('adb packet codec', () => {
  it('round-trips packets and checks magic, length and checksum', () => {
    const p = encodePacket({ command: A_WRTE, arg0: 5, arg1: 9, data: Buffer.from('hello') });
    expect(p.length).toBe(29);
    expect(p.readUInt32LE(16)).toBe([...Buffer.from('hello')].reduce((a, b) => a + b, 0));
    expect(p.readUInt32LE(20)).toBe((A_WRTE ^ 0xffffffff) >>> 0);
    const r = new AdbPacketReader();
    // Byte-by-byte delivery still yields exactly one packet.
    const got = [...p].flatMap((b) => r.push(Buffer.from([b])));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ command: A_WRTE, arg0: 5, arg1: 9 });
    expect(got[0].data.toString()).toBe('hello');
    const bad = Buffer.from(p);
    bad.writeUInt32LE(0, 20);
    expect(() => new AdbPacketReader().push(bad)).toThrow(/bad magic/);
    const sum = Buffer.from(p);
    sum[24] ^= 1;
    expect(() => new AdbPacketReader().push(sum)).toThrow(/checksum/);
    const v2 = new AdbPacketReader();
    v2.verifyChecksum = false;
    expect(v2.push(sum)).toHaveLength(1);
    const big = Buffer.from(p);
    big.writeUInt32LE(2 * 1024 * 1024, 12);
    expect(() => new AdbPacketReader().push(big)).toThrow(/length out of range/);
  });

  it('fuzz: mutated packet streams only ever raise OmieError', () => {
    const rnd = prng(0xadb);
    const seed = Buffer.concat([
      encodePacket({
        command: A_CNXN,
        arg0: 0x01000001,
        arg1: 1 << 20,
        data: Buffer.from('host::features=shell_v2'),
      }),
      encodePacket({ command: A_OPEN, arg0: 1, arg1: 0, data: Buffer.from('shell,v2,raw:getprop\0') }),
      encodePacket({ command: A_WRTE, arg0: 1, arg1: 1, data: Buffer.alloc(40, 7) }),
      encodePacket({ command: A_CLSE, arg0: 1, arg1: 1, data: Buffer.alloc(0) }),
    ]);
    for (let i = 0; i < 3000; i++) {
      const m = mutate(seed, rnd);
      const r = new AdbPacketReader();
      try {
        let off = 0;
        while (off < m.length) {
          const n = 1 + Math.floor(rnd() * 64);
          r.push(m.subarray(off, off + n));
          off += n;
        }
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      }
    }
  });
});

describe('Android RSA public key format', () => {
  it('encodes a key exactly as the real adb writes adbkey.pub, and fingerprints it', async () => {
    const real = await startRealAdb(dir);
    try {
      const pem = readFileSync(join(real.home, '.android/adbkey'), 'utf8');
      const pubLine = readFileSync(join(real.home, '.android/adbkey.pub'), 'utf8');
      const ours = encodeAdbPublicKey(createPublicKey(createPrivateKey(pem)));
      expect(ours).toBe(pubLine.split(' ')[0]);
      const parsed = parseAdbPublicKey(pubLine);
      expect(parsed.fingerprint).toMatch(/^([0-9A-F]{2}:){15}[0-9A-F]{2}$/);
      expect(parsed.key.export({ format: 'jwk' }).n).toBe(
        createPublicKey(createPrivateKey(pem)).export({ format: 'jwk' }).n,
      );
    } finally {
      await real.stop();
    }
  }, 30_000);

  it('rejects malformed keys with typed errors', () => {
    expect(() => parseAdbPublicKey('not base64!')).toThrow(OmieError);
    expect(() => parseAdbPublicKey(Buffer.alloc(100).toString('base64'))).toThrow(/bad key size/);
    const rnd = prng(7);
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const good = Buffer.from(encodeAdbPublicKey(publicKey), 'base64');
    for (let i = 0; i < 300; i++) {
      try {
        parseAdbPublicKey(mutate(good, rnd).toString('base64'));
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      }
    }
  });
});

describe('adbd wire protocol', () => {
  it('answers CNXN with the device banner and negotiated version/maxdata', async () => {
    const c = await WireClient.open(server.port);
    const p = await c.handshake();
    expect(p?.command).toBe(A_CNXN);
    expect(p?.arg0).toBe(0x01000001);
    expect(p?.arg1).toBe(1024 * 1024);
    expect(p?.data.toString()).toBe(
      'device::ro.product.name=omie_tablet;ro.product.model=omie_tablet;ro.product.device=omie_tablet;features=shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,fixed_push_symlink_timestamp',
    );
    c.close();
  });

  it('runs shell v2 with separate stdout/stderr and exit status, and shell v1 raw', async () => {
    const c = await WireClient.open(server.port);
    await c.handshake();
    const v2 = decodeShellV2((await c.service('shell,v2,raw:echo out; nope; exit 5')).data);
    expect(v2).toEqual({ stdout: 'out\n', stderr: '/system/bin/sh: nope: not found\n', exit: 5 });
    const v1 = await c.service('shell:getprop ro.serialno', [], 9);
    expect(v1.data.toString()).toBe('WIRE0001\n');
    const unknown = await c.service('jdwp:1234', [], 11);
    expect(unknown.opened).toBe(false);
    // Interactive v2 shell: stdin packets, then close-stdin.
    const line = Buffer.from('echo hi\n');
    const pkt = Buffer.concat([Buffer.from([0]), Buffer.alloc(4), line]);
    pkt.writeUInt32LE(line.length, 1);
    const interactive = decodeShellV2(
      (await c.service('shell,v2,pty:', [pkt, Buffer.from([4, 0, 0, 0, 0])], 13)).data,
    );
    expect(interactive.stdout).toContain('hi\n');
    expect(interactive.exit).toBe(0);
    c.close();
  });

  it('sync: SEND then RECV, STAT v1, STA2, LIST and LIS2', async () => {
    const c = await WireClient.open(server.port);
    await c.handshake();
    const body = Buffer.alloc(150_000, 0x5a);
    const data: Buffer[] = [syncRequest('SEND', '/data/local/tmp/x.bin,33188')];
    for (let off = 0; off < body.length; off += 65536)
      data.push(syncRequest('DATA', body.subarray(off, off + 65536)));
    const done = Buffer.alloc(8);
    done.write('DONE');
    done.writeUInt32LE(1_700_000_000, 4);
    data.push(done);
    data.push(syncRequest('RECV', '/data/local/tmp/x.bin'));
    data.push(syncRequest('STAT', '/data/local/tmp/x.bin'));
    data.push(syncRequest('STA2', '/data/local/tmp/none'));
    data.push(syncRequest('LIST', '/data/local/tmp'));
    data.push(syncRequest('LIS2', '/data/local/tmp'));
    data.push(syncRequest('QUIT', ''));
    const r = await c.service('sync:', data, 21);
    let off = 0;
    const take = (n: number) => {
      const b = r.data.subarray(off, off + n);
      off += n;
      return b;
    };
    expect(take(8).toString('latin1', 0, 4)).toBe('OKAY');
    const recv: Buffer[] = [];
    for (;;) {
      const h = take(8);
      const id = h.toString('latin1', 0, 4);
      if (id === 'DONE') break;
      expect(id).toBe('DATA');
      recv.push(take(h.readUInt32LE(4)));
    }
    expect(Buffer.concat(recv).equals(body)).toBe(true);
    const st = take(16);
    expect(st.toString('latin1', 0, 4)).toBe('STAT');
    expect(st.readUInt32LE(4) & 0o170777).toBe(0o100644);
    expect(st.readUInt32LE(8)).toBe(body.length);
    expect(st.readUInt32LE(12)).toBe(1_700_000_000);
    const st2 = take(72);
    expect(st2.toString('latin1', 0, 4)).toBe('STA2');
    expect(st2.readUInt32LE(4)).toBe(2); // ENOENT
    const names: string[] = [];
    for (;;) {
      const d = take(20);
      if (d.toString('latin1', 0, 4) === 'DONE') break;
      names.push(take(d.readUInt32LE(16)).toString());
    }
    expect(names).toContain('x.bin');
    const names2: string[] = [];
    for (;;) {
      const d = take(76);
      if (d.toString('latin1', 0, 4) === 'DONE') break;
      expect(d.toString('latin1', 0, 4)).toBe('DNT2');
      names2.push(take(d.readUInt32LE(72)).toString());
    }
    expect(names2.sort()).toEqual(names.sort());
    expect(off).toBe(r.data.length);
    c.close();
  });

  /**
   * Serves `pkg` over sideload-host on `port` as adb's client does (`change` alters what a block
   * holds the n-th time it is asked for); the blocks asked for and how the device ended it.
   */
  async function serveSideload(
    port: number,
    pkg: Buffer,
    change?: (block: number, nth: number) => Buffer | undefined,
  ) {
    const c = await WireClient.open(port);
    const banner = await c.handshake();
    expect(banner?.data.toString()).toMatch(/^sideload::/);
    c.send(A_OPEN, 3, 0, `sideload-host:${pkg.length}:4096\0`);
    const ok = await c.next();
    expect(ok?.command).toBe(A_OKAY);
    const remote = ok?.arg0 ?? 0;
    const asked: number[] = [];
    let finished = '';
    for (;;) {
      const p = await c.next();
      if (!p || p.command === A_CLSE) break;
      if (p.command !== A_WRTE) continue;
      c.send(A_OKAY, 3, remote);
      const text = p.data.toString();
      if (text === 'DONEDONE' || text === 'FAILFAIL') {
        finished = text;
        continue;
      }
      expect(text).toMatch(/^\d{8}$/);
      const block = Number(text);
      const block4k = pkg.subarray(block * 4096, (block + 1) * 4096);
      const nth = asked.filter((b) => b === block).length;
      asked.push(block);
      c.send(A_WRTE, 3, remote, change?.(block, nth) ?? block4k);
    }
    c.close();
    return { asked, finished };
  }

  /** minadbd exits after its answer: the device is back in recovery a moment later. */
  async function waitMode(mode: string) {
    for (let i = 0; i < 100 && (await state.reload()).mode !== mode; i++)
      await new Promise((r) => setTimeout(r, 20));
    return state.info.mode;
  }

  it('sideload-host: the device pulls the blocks it reads, twice, and refuses a block that changed (FAILFAIL)', async () => {
    await state.update((d) => {
      d.mode = 'sideload';
      d.sideloadAutoReboot = false;
    });
    // 21 blocks: more than the device keeps, so the second pass asks for each one again.
    const pkg = Buffer.alloc(20 * 4096 + 100);
    for (let i = 0; i < pkg.length; i++) pkg[i] = i % 251;
    let seen: Buffer[] = [];
    // A recovery that reads the package twice (signature, then install), as the real one does.
    const reader = await startAdbServer({
      state,
      port: 0,
      sideload: async (blocks) => {
        seen = [];
        try {
          seen.push(await blocks.read(0, blocks.size), await blocks.read(0, blocks.size));
          return { ok: true, log: [] };
        } catch {
          return { ok: false, log: [] };
        }
      },
    });
    try {
      const good = await serveSideload(reader.port, pkg);
      expect(good.finished).toBe('DONEDONE');
      expect(seen[0].equals(pkg)).toBe(true);
      expect(seen[1].equals(pkg)).toBe(true);
      const all = [...Array(21).keys()];
      expect(good.asked).toEqual([...all, ...all.slice(0)]);
      expect(await waitMode('recovery')).toBe('recovery');

      await state.update((d) => {
        d.mode = 'sideload';
      });
      const evil = await serveSideload(reader.port, pkg, (block, nth) =>
        block === 5 && nth === 1 ? Buffer.alloc(4096, 0x41) : undefined,
      );
      expect(evil.finished).toBe('FAILFAIL');
    } finally {
      await reader.close();
    }
  });

  it('sideload-host: a device whose system trusts no OTA key refuses without reading, back to recovery', async () => {
    await state.update((d) => {
      d.mode = 'sideload';
    });
    const r = await serveSideload(server.port, Buffer.alloc(10_000, 1));
    expect(r).toEqual({ asked: [], finished: 'FAILFAIL' });
    expect(await waitMode('recovery')).toBe('recovery');
    const lastInstall = readFileSync(join(state.dir, 'data/misc/recovery/last_install'), 'utf8').split('\n');
    expect(lastInstall.slice(0, 2)).toEqual(['/sideload/package.zip', '0']);
    expect(lastInstall).toContain('error: 21');
    await state.update((d) => {
      d.mode = 'adb';
    });
  });

  it('AUTH: unknown key is left waiting; a listed key is accepted and then signs in by signature', async () => {
    await state.update((d) => {
      d.adbAuthRequired = true;
      d.adbAuthorized = [];
    });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pubLine = `${encodeAdbPublicKey(publicKey)} test@omie\0`;
    const fp = parseAdbPublicKey(pubLine).fingerprint;

    const c = await WireClient.open(server.port);
    const t1 = await c.handshake();
    expect(t1?.command).toBe(A_AUTH);
    expect(t1?.arg0).toBe(ADB_AUTH_TOKEN);
    expect(t1?.data.length).toBe(20);
    c.send(A_AUTH, ADB_AUTH_SIGNATURE, 0, sign(privateKey, t1!.data));
    const t2 = await c.next();
    expect(t2?.command).toBe(A_AUTH); // signature by an unknown key: a new token
    c.send(A_AUTH, ADB_AUTH_RSAPUBLICKEY, 0, pubLine);
    expect(await c.next(500)).toBeNull(); // "Allow USB debugging?" never answered
    c.send(A_OPEN, 1, 0, 'shell:id\0');
    expect(await c.next(300)).toBeNull(); // no streams while unauthorized
    c.close();

    await state.update((d) => {
      d.adbAuthorized = [fp];
    });
    const c2 = await WireClient.open(server.port);
    const t3 = await c2.handshake();
    c2.send(A_AUTH, ADB_AUTH_SIGNATURE, 0, sign(privateKey, t3!.data));
    expect((await c2.next())?.command).toBe(A_AUTH);
    c2.send(A_AUTH, ADB_AUTH_RSAPUBLICKEY, 0, pubLine);
    expect((await c2.next())?.command).toBe(A_CNXN);
    c2.close();

    const c3 = await WireClient.open(server.port);
    const t4 = await c3.handshake();
    c3.send(A_AUTH, ADB_AUTH_SIGNATURE, 0, sign(privateKey, t4!.data));
    expect((await c3.next())?.command).toBe(A_CNXN);
    // A signature over a different token is refused.
    c3.close();
    const c4 = await WireClient.open(server.port);
    await c4.handshake();
    c4.send(A_AUTH, ADB_AUTH_SIGNATURE, 0, sign(privateKey, Buffer.alloc(20, 1)));
    expect((await c4.next())?.command).toBe(A_AUTH);
    c4.close();
    await state.update((d) => {
      d.adbAuthRequired = false;
    });
  });

  it('refuses connections while the device is in the bootloader', async () => {
    await state.update((d) => {
      d.mode = 'bootloader';
    });
    const c = await WireClient.open(server.port);
    expect(await c.handshake()).toBeNull();
    expect(c.closed).toBe(true);
    await state.update((d) => {
      d.mode = 'adb';
    });
  });

  it('fuzz: mutated sessions close cleanly and the server keeps serving', async () => {
    const rnd = prng(0x5eed);
    const session = Buffer.concat([
      encodePacket({
        command: A_CNXN,
        arg0: 0x01000001,
        arg1: 1 << 20,
        data: Buffer.from('host::features=shell_v2'),
      }),
      encodePacket({
        command: A_OPEN,
        arg0: 1,
        arg1: 0,
        data: Buffer.from('shell,v2,raw:getprop ro.serialno\0'),
      }),
      encodePacket({ command: A_OPEN, arg0: 2, arg1: 0, data: Buffer.from('sync:\0') }),
      encodePacket({ command: A_WRTE, arg0: 2, arg1: 2, data: syncRequest('STAT', '/data') }),
      encodePacket({ command: A_WRTE, arg0: 2, arg1: 2, data: syncRequest('SEND', '/data/f,420') }),
      encodePacket({ command: A_WRTE, arg0: 2, arg1: 2, data: syncRequest('DATA', 'abc') }),
      encodePacket({ command: A_OKAY, arg0: 1, arg1: 1, data: Buffer.alloc(0) }),
      encodePacket({ command: A_CLSE, arg0: 1, arg1: 1, data: Buffer.alloc(0) }),
    ]);
    const t0 = Date.now();
    for (let i = 0; i < 300; i++) {
      const c = await WireClient.open(server.port);
      c.socket.write(mutate(session, rnd));
      await new Promise((res) => setTimeout(res, 2));
      c.close();
    }
    expect(Date.now() - t0).toBeLessThan(20_000);
    const ok = await WireClient.open(server.port);
    await ok.handshake();
    expect(decodeShellV2((await ok.service('shell,v2,raw:getprop ro.serialno')).data).stdout).toBe(
      'WIRE0001\n',
    );
    ok.close();
  }, 30_000);

  it('fuzz: the shell interpreter never throws on arbitrary command lines', async () => {
    const view = new DeviceView(state);
    const ctx = { view, reboot: async () => {} };
    const rnd = prng(99);
    const alphabet = ' \t\n;|&><\'"\\$?{}ab-12getprop pm ls cat echo grep exit settings';
    for (let i = 0; i < 400; i++) {
      const len = Math.floor(rnd() * 40);
      let line = '';
      for (let k = 0; k < len; k++) line += alphabet[Math.floor(rnd() * alphabet.length)];
      const r = await runShell(line, ctx);
      expect(r.exitCode).toBeGreaterThanOrEqual(0);
      expect(r.exitCode).toBeLessThan(256);
    }
  }, 30_000);
});
