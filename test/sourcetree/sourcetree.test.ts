import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FRAMEWORK_RES } from '../../scripts/host/tools.ts';
import { omie, sampleFixture, workDir } from '../helpers.ts';
import { hostFile } from '../host-tools.ts';

const dir = workDir('sourcetree');
const FRAMEWORK = hostFile(FRAMEWORK_RES);
let fx: Awaited<ReturnType<typeof sampleFixture>>;

/** A small reader of Blueprint files, independent of the writer: `type { key: value, ... }` modules. */
function parseBlueprint(text: string): Array<{ type: string; props: Record<string, unknown> }> {
  const src = text.replace(/\/\/.*$/gm, '');
  let i = 0;
  const ws = () => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  const ident = () => {
    ws();
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
    if (!m) throw new Error(`identifier expected at ${i}: ${src.slice(i, i + 20)}`);
    i += m[0].length;
    return m[0];
  };
  const expectChar = (c: string) => {
    ws();
    if (src[i] !== c) throw new Error(`${c} expected at ${i}, found ${src.slice(i, i + 20)}`);
    i++;
  };
  const value = (): unknown => {
    ws();
    if (src[i] === '"') {
      const m = /^"(?:[^"\\]|\\.)*"/.exec(src.slice(i));
      if (!m) throw new Error(`bad string at ${i}`);
      i += m[0].length;
      return JSON.parse(m[0]);
    }
    if (src[i] === '[') {
      i++;
      const list: unknown[] = [];
      for (ws(); src[i] !== ']'; ws()) {
        list.push(value());
        ws();
        if (src[i] === ',') i++;
        ws();
      }
      i++;
      return list;
    }
    if (src[i] === '{') return map();
    const word = ident();
    if (word === 'true' || word === 'false') return word === 'true';
    throw new Error(`unexpected ${word} at ${i}`);
  };
  const map = () => {
    expectChar('{');
    const props: Record<string, unknown> = {};
    for (ws(); src[i] !== '}'; ws()) {
      const k = ident();
      expectChar(':');
      props[k] = value();
      ws();
      if (src[i] === ',') i++;
      else if (src[i] !== '}') throw new Error(`, or } expected at ${i}`);
    }
    i++;
    return props;
  };
  const modules = [];
  for (ws(); i < src.length; ws()) modules.push({ type: ident(), props: map() });
  return modules;
}

describe('omie source-tree', () => {
  const out = join(dir, 'vendor/omie');
  let result: { modules: string[]; files: Array<{ path: string }> };

  beforeAll(async () => {
    fx = await sampleFixture();
    const r = await omie(['source-tree', fx.product, '--out', out, '--json'], {
      env: { OMIE_HOME: fx.home },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    result = JSON.parse(r.stdout);
  }, 1_200_000);

  it('Android.bp declares every app (presigned, on its partition, with its XMLs) and every overlay', () => {
    const mods = parseBlueprint(readFileSync(join(out, 'Android.bp'), 'utf8'));
    expect(mods.map((m) => m.props.name)).toEqual(result.modules);
    const byName = new Map(mods.map((m) => [m.props.name as string, m]));
    const apps = readdirSync(join(fx.tree, 'prebuilt-apps')).sort();
    for (const app of apps) {
      const yaml = readFileSync(join(fx.tree, 'prebuilt-apps', app, 'app.yaml'), 'utf8');
      const file = /^apk: \{ file: (\S+),/m.exec(yaml)![1];
      const pin = readFileSync(join(fx.tree, 'prebuilt-apps', app, `${file}.sha256`), 'utf8').trim();
      const onProduct = /^partition: product$/m.test(yaml);
      if (file.endsWith('.apex')) {
        // An APEX module, by its package: the remaster's /system/apex/<package>.apex.
        const m = mods.find((x) => x.type === 'prebuilt_apex' && x.props.filename === file);
        expect(m, app).toBeDefined();
        expect(
          createHash('sha256')
            .update(readFileSync(join(out, m?.props.src as string)))
            .digest('hex'),
        ).toBe(pin);
        continue;
      }
      const m = byName.get(app);
      expect(m?.type, app).toBe('android_app_import');
      expect(m?.props.presigned).toBe(true);
      expect(m?.props.product_specific).toBe(onProduct || undefined);
      for (const req of (m?.props.required as string[] | undefined) ?? [])
        expect(byName.has(req), req).toBe(true);
      const apk = join(out, m?.props.apk as string);
      expect(createHash('sha256').update(readFileSync(apk)).digest('hex')).toBe(pin);
    }
    expect(byName.get('PersonalCloud')?.props.privileged).toBe(true);
    expect(byName.get('PersonalCloud')?.props.required).toContain(
      'privapp-permissions-org.omie.personalcloud.xml',
    );
    expect(byName.get('omie-personal-cloud.json')?.props).toMatchObject({
      sub_dir: 'omie',
      filename: 'personal-cloud.json',
    });
    const overlays = mods.filter((m) => m.type === 'runtime_resource_overlay').map((m) => m.props.name);
    // The product's overlays, and the one naming its WebView provider.
    expect(overlays.sort()).toEqual(
      [...readdirSync(join(fx.tree, 'overlays')), 'omie-webview-providers'].sort(),
    );
    expect(
      readFileSync(join(out, 'overlays/omie-webview-providers/res/xml/config_webview_packages.xml'), 'utf8'),
    ).toMatch(
      /<webviewprovider description="Omie WebView" packageName="org\.omie\.webview" availableByDefault="true">/,
    );
    for (const m of mods)
      if (m.type === 'prebuilt_etc') expect(existsSync(join(out, m.props.src as string))).toBe(true);
  });

  it('copied APKs still verify with apksigner, XMLs are well-formed', async () => {
    for (const f of result.files.map((x) => x.path)) {
      if (f.endsWith('.apk')) {
        const r = await execa('apksigner', ['verify', join(out, f)], { reject: false });
        expect(r.exitCode, `${f}: ${r.stderr}`).toBe(0);
      } else if (f.endsWith('.xml')) {
        const r = await execa('xmllint', ['--noout', join(out, f)], { reject: false });
        expect(r.exitCode, `${f}: ${r.stderr}`).toBe(0);
      }
    }
  });

  it.skipIf(!FRAMEWORK.present)(
    `overlay sources compile with aapt against a real framework-res ${FRAMEWORK.reason}`,
    async () => {
      for (const o of readdirSync(join(out, 'overlays'))) {
        if (o !== 'omie-branding' && o !== 'omie-endpoints') continue; // these two target the framework
        const r = await execa(
          'aapt',
          [
            'package',
            '-f',
            '-M',
            join(out, 'overlays', o, 'AndroidManifest.xml'),
            '-S',
            join(out, 'overlays', o, 'res'),
            '-I',
            FRAMEWORK_RES,
            '-F',
            join(dir, `${o}.apk`),
          ],
          { reject: false },
        );
        expect(r.exitCode, `${o}: ${r.stderr}`).toBe(0);
      }
    },
  );

  it('omie.mk is valid make: GNU make reads the identity, packages and properties from it', async () => {
    const probe = join(dir, 'probe.mk');
    writeFileSync(
      probe,
      'include omie.mk\nall:\n\t@echo "$(PRODUCT_MODEL)|$(strip $(PRODUCT_PACKAGES))|$(strip $(PRODUCT_PRODUCT_PROPERTIES))|$(strip $(PRODUCT_SYSTEM_PROPERTIES))"\n',
    );
    const r = await execa('make', ['-s', '-f', probe, '-I', out, 'all'], { cwd: out });
    const [model, packages, props, system] = r.stdout.trim().split('|');
    expect(model).toBe('Omie Tablet');
    expect(packages.split(' ')).toEqual(result.modules);
    expect(props.split(' ')).toContain('ro.omie.version=1.0.0');
    expect(system).toBe('ro.control_privapp_permissions=enforce');
    const board = await execa('make', ['-s', '-f', '-', 'all'], {
      cwd: out,
      input:
        'include BoardConfigOmie.mk\nall:\n\t@echo "$(BOARD_AVB_ALGORITHM) $(BOARD_AVB_ROLLBACK_INDEX)"\n',
    });
    // The reference device profile's avb.rollbackIndex.
    expect(board.stdout.trim()).toBe('SHA256_RSA4096 1');
  });

  it('an APK that does not match its pin is refused (exit 1) and nothing is written', async () => {
    const tree = join(dir, 'bad-tree');
    cpSync(fx.tree, tree, { recursive: true });
    const apk = join(tree, 'prebuilt-apps/Wallet/Wallet.apk');
    const bytes = readFileSync(apk);
    bytes[bytes.length - 30] ^= 0xff;
    writeFileSync(apk, bytes);
    const target = join(dir, 'bad-out');
    const r = await omie(
      ['source-tree', join(tree, 'device/omie/tablet/products/omie-tablet.yaml'), '--out', target],
      { env: { OMIE_HOME: fx.home } },
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Wallet.*sha256/);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir).some((f) => f.includes('.tmp-'))).toBe(false);
  });
});
