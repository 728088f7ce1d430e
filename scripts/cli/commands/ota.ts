import type { Command } from 'commander';
import { ExitCode, InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';
import { makeProgress } from '../progress.ts';

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export function registerOta(program: Command): void {
  const ota = program
    .command('ota')
    .description(
      'make a signed A/B OTA package from a build folder: full, or incremental from an older build (--from)',
    )
    .argument('<build-dir>', 'folder `omie build --out` wrote')
    // Not requiredOption: commander checks a parent's required options before its subcommands run.
    .option('--out <file.zip>', 'the OTA package to write (required)')
    .option('--from <build-dir>', 'an older build folder: make an incremental OTA that updates it')
    .option(
      '--product <yaml>',
      'product whose OTA key signs the package (default: the one the build record names)',
    )
    .option(
      '--allow-test-keys',
      'accept a public AOSP test key as the OTA key (the package is then not for release)',
    )
    .option(
      '--verity-on-device',
      'incrementals: let the device recompute dm-verity hash trees instead of shipping their changed blocks',
    )
    .option('-j, --jobs <n>', 'compression threads (default: CPU cores)', (v) => Number.parseInt(v, 10))
    .addHelpText(
      'after',
      [
        '',
        'The payload (major version 2; minor 0 for full, 6 for incremental) is signed with signing.otaKey',
        "(default: signing.apkKey) of the product; `omie build` puts that key's certificate into the image's",
        'otacerts.zip so devices accept the package. The zip is signed whole-file as signapk -w signs OTAs.',
        'Exit 2 on bad input (a build folder without images, a test key, a downgrade).',
      ].join('\n'),
    )
    .action(
      async (
        buildDir: string,
        o: {
          out?: string;
          from?: string;
          product?: string;
          allowTestKeys?: boolean;
          verityOnDevice?: boolean;
          jobs?: number;
        },
        cmd: Command,
      ) => {
        const json = globalOpts(cmd).json;
        const out = makeOutput(json);
        if (!o.out)
          throw new InputError('omie ota needs --out <file.zip>', {
            code: 'USAGE',
            hint: 'omie ota <build-dir> --out ota.zip',
          });
        const progress = makeProgress(json);
        try {
          const { makeOta } = await import('../../ota/make.ts');
          const r = await makeOta({
            build: buildDir,
            from: o.from,
            out: o.out,
            product: o.product,
            allowTestKeys: o.allowTestKeys,
            verityOnDevice: o.verityOnDevice,
            threads: o.jobs,
            onProgress: progress,
            log: (l) => out.warn(l.replace(/^warning: /, '')),
          });
          progress.stop();
          out.result(r, (v) =>
            [
              `${v.kind} OTA of ${v.product.name} ${v.product.version}: ${v.path} (${mib(v.size)})${v.release ? '' : ' (NON-RELEASE: test key)'}`,
              `installs ${v.postBuild}${v.preBuild ? ` over ${v.preBuild}` : ''}`,
              `signed by certificate sha256 ${v.certificateSha256}`,
              '',
              table(
                v.partitions.map((p) => [
                  p.name,
                  mib(p.size),
                  String(p.operations),
                  Object.entries(p.operationTypes)
                    .map(([t, n]) => `${t}×${n}`)
                    .join(' '),
                  mib(p.dataBytes),
                ]),
                ['partition', 'size', 'ops', 'operations', 'data'],
              ),
            ].join('\n'),
          );
        } finally {
          progress.stop();
        }
      },
    );

  ota
    .command('publish')
    .description(
      'add an OTA package to an update feed a static web server can host (LineageOS Updater JSON + signed manifest)',
    )
    .argument('<ota.zip>', 'package made by `omie ota`')
    .requiredOption('--feed <dir>', 'the feed folder (created if absent)')
    .requiredOption(
      '--url-base <url>',
      'where the feed folder is served, e.g. https://updates.example.com/omie',
    )
    .option(
      '--product <yaml>',
      'product whose OTA key signs the manifest (default: the one the package names)',
    )
    .option(
      '--romtype <type>',
      "the Updater's release type (ro.lineage.releasetype of the devices)",
      'release',
    )
    .addHelpText(
      'after',
      '\nWrites <feed>/<device>.json (full OTAs, for lineage.updater.uri=<url-base>/{device}.json), manifest.dsse.json\n(every OTA with its sha256, and the base build of incrementals, signed with the OTA key) and ota.x509.pem.',
    )
    .action(
      async (
        zip: string,
        o: { feed: string; urlBase: string; product?: string; romtype: string },
        cmd: Command,
      ) => {
        const out = makeOutput(globalOpts(cmd).json);
        const { publishOta } = await import('../../ota/feed.ts');
        const r = await publishOta({
          ota: zip,
          feed: o.feed,
          urlBase: o.urlBase,
          product: o.product,
          romtype: o.romtype,
        });
        out.result(r, (v) =>
          [
            `published ${v.added.filename} (${v.added.kind}, ${v.added.version}) to ${v.feed}`,
            `feed: ${v.manifest.updates.length} package(s); Updater JSON ${v.lineage}`,
          ].join('\n'),
        );
      },
    );

  ota
    .command('verify-feed')
    .description(
      "check an update feed: the manifest's signature, every package's digest and signer, the Updater JSON",
    )
    .argument('<dir>', 'the feed folder')
    .option('--cert <pem>', "the OTA certificate to trust (default: the feed's own ota.x509.pem, not pinned)")
    .addHelpText('after', '\nExit 1 when anything does not match.')
    .action(async (dir: string, o: { cert?: string }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { verifyFeed } = await import('../../ota/feed.ts');
      const r = await verifyFeed(dir, o.cert);
      out.result(r, (v) =>
        [
          `${v.ok ? 'ok' : 'FAILED'}: ${v.feed}, signed by ${v.certificateSha256}${v.pinned ? '' : " (the feed's own certificate: pass --cert to pin it)"}`,
          ...v.updates.map((u) => `  ${u.verified ? 'ok  ' : 'BAD '} ${u.filename} ${u.kind} ${u.version}`),
          ...v.problems.map((p) => `  problem: ${p.file}: ${p.problem}`),
        ].join('\n'),
      );
      if (!r.ok) process.exitCode = ExitCode.checkFailed;
    });
}
