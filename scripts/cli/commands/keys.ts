import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerKeys(program: Command): void {
  const keys = program
    .command('keys')
    .description('manage signing keys (kept outside the repo in $OMIE_HOME/keys, default ~/.omie)');
  keys
    .command('init')
    .description(
      'create (or show, if it exists) a named key set: an APK signing key and an AVB RSA key, files 0600',
    )
    .argument('<name>', 'key set name, referenced from products as { name: <name> }')
    .option('--avb-bits <n>', 'AVB RSA key size: 2048, 4096 or 8192', '4096')
    .option(
      '--roles <list>',
      'also an APK key per AOSP key role, comma-separated (releasekey, platform, shared, media, networkstack, bluetooth, sdk_sandbox, nfc), for signing.apkKeys',
    )
    .action(async (name: string, o: { avbBits: string; roles?: string }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { certSha256, initKeys, parseRoles } = await import('../../keys/store.ts');
      const roles = parseRoles(
        (o.roles ?? '')
          .split(',')
          .map((r) => r.trim())
          .filter(Boolean),
      );
      const k = await initKeys(name, { avbBits: Number(o.avbBits), roles });
      const apkCertSha256 = await certSha256(k.apk.certPem);
      const roleKeys: Record<string, { cert: string; certSha256: string }> = {};
      for (const [role, key] of Object.entries(k.roles))
        roleKeys[role] = { cert: key.certPem, certSha256: await certSha256(key.certPem) };
      out.result(
        {
          name: k.name,
          dir: k.dir,
          apkCert: k.apk.certPem,
          apkCertSha256,
          avbKey: k.avbPem,
          roles: roleKeys,
        },
        (v) =>
          [
            `key set ${v.name} in ${v.dir}`,
            `  APK certificate SHA-256: ${v.apkCertSha256}`,
            ...Object.entries(v.roles).map(([r, x]) => `  ${r} certificate SHA-256: ${x.certSha256}`),
            `  AVB key: ${v.avbKey}`,
          ].join('\n'),
      );
    });
}
