#!/usr/bin/env node
// Launcher: runs the TypeScript CLI through tsx so that the kit ships as source (no build step).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./cli/main.ts');
process.exitCode = await main(process.argv);
