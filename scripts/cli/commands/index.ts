import type { Command } from 'commander';
import { registerAudit } from './audit.ts';
import { registerBench } from './bench.ts';
import { registerBuild } from './build.ts';
import { registerCheck } from './check.ts';
import { registerDevices } from './devices.ts';
import { registerDoctor } from './doctor.ts';
import { registerExtractOta } from './extract-ota.ts';
import { registerFlash } from './flash.ts';
import { registerInit } from './init.ts';
import { registerInspect } from './inspect.ts';
import { registerKeys } from './keys.ts';
import { registerSampleApps } from './sample-apps.ts';
import { registerSampleBase } from './sample-base.ts';
import { registerSchemas } from './schemas.ts';
import { registerSim } from './sim.ts';
import { registerSourceTree } from './source-tree.ts';
import { registerUnlock } from './unlock.ts';
import { registerValidate } from './validate.ts';
import { registerVerifyAttestation } from './verify-attestation.ts';

/** Every `omie` command, one line each. Each file parses arguments, calls a library module, and prints. */
export const commands: Array<(program: Command) => void> = [
  registerDoctor,
  registerValidate,
  registerInit,
  registerSchemas,
  registerKeys,
  registerSampleApps,
  registerSampleBase,
  registerInspect,
  registerExtractOta,
  registerBuild,
  registerSourceTree,
  registerCheck,
  registerBench,
  registerVerifyAttestation,
  registerAudit,
  registerSim,
  registerDevices,
  registerFlash,
  registerUnlock,
];
