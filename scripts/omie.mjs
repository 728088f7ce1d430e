#!/usr/bin/env node
// Launcher: runs the TypeScript CLI through tsx so that the kit ships as source (no build step),
// or the bundle of it that `npm start` makes, while that is up to date.
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';

// The kit streams GiB images through MiB-sized Buffers, outside the JS heap. Two process-wide
// settings keep a build's peak RSS down, and both are read at start-up only, so the launcher
// restarts itself with them unless the caller chose otherwise:
// - a smaller V8 young generation (the default 16 MiB semi-spaces mostly hold garbage);
// - a fixed glibc mmap threshold: by default it rises after the first large free, and every
//   later 4 MiB I/O buffer then comes from (and fragments) the malloc heap instead of being
//   returned to the system. Together about -70 MiB of peak RSS in a 1 GiB build.
const SEMI_SPACE = '--max-semi-space-size=4';
const chosen = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) =>
  a.startsWith('--max-semi-space-size'),
);
if (!chosen) {
  const child = spawn(process.execPath, [SEMI_SPACE, ...process.execArgv, ...process.argv.slice(1)], {
    // The IPC channel only tells the child when this process is gone (even by SIGKILL).
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: {
      MALLOC_MMAP_THRESHOLD_: String(1024 * 1024),
      ...process.env,
      OMIE_LAUNCHER_PID: String(process.pid),
    },
  });
  // A terminal's Ctrl-C reaches the whole process group (the child too): forward only the signals
  // that are sent to this process alone.
  process.on('SIGINT', () => {});
  for (const sig of ['SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => {
    console.error(`omie: cannot start ${process.execPath}: ${e.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  if (process.channel && process.env.OMIE_LAUNCHER_PID === String(process.ppid)) {
    // Started by the launcher above: a launcher that dies (killed, even with SIGKILL) must not
    // leave a build or a virtual device running unseen. Exiting runs the 'exit' cleanups
    // (a build's temporary folders).
    process.channel.unref();
    process.once('disconnect', () => process.exit(143));
  }
  // The bundle `npm start` makes (scripts/cli/bundle.mjs) when it matches the sources, else the
  // sources through tsx. OMIE_NO_BUNDLE=1 always runs the sources.
  const { freshBundle } = await import('./cli/bundle.mjs');
  const bundle =
    process.env.OMIE_NO_BUNDLE === '1' ? null : freshBundle(process.env.OMIE_BUNDLE_DIR || undefined);
  if (process.env.OMIE_TRACE_LAUNCH) console.error(`omie: running ${bundle ?? 'the sources (tsx)'}`);
  let main;
  if (bundle) ({ main } = await import(pathToFileURL(bundle).href));
  else {
    const { register } = await import('tsx/esm/api');
    register();
    ({ main } = await import('./cli/main.ts'));
  }
  process.exitCode = await main(process.argv);
}
