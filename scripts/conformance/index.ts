/** Public surface of the conformance checker. */
export { type BuildReference, readBuildReference } from './build-ref.ts';
export { checkFamilies } from './checks/index.ts';
export { deviceView } from './device-view.ts';
export { runChecks, summarize } from './engine.ts';
export { imageView } from './image-view.ts';
export { memoryView } from './memory-view.ts';
export { htmlReport } from './reporters/html.ts';
export {
  REPORT_FILES,
  REPORT_FORMATS,
  type ReportFormat,
  renderReport,
  writeReports,
} from './reporters/index.ts';
export { junitXml } from './reporters/junit.ts';
export { markdownSummary } from './reporters/markdown.ts';
export { sarifLog } from './reporters/sarif.ts';
export { type CheckRun, DEFAULT_SPEC_DIR, type RunCheckOptions, runCheck, runCheckWithFiles } from './run.ts';
export { diffSpecFiles, loadSpec, type Spec, type SpecFile, specDigest } from './spec.ts';
export * from './spec-schema.ts';
export type { SystemView } from './view.ts';
