import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // Fixtures (APKs, images) are generated once per run into test/.work by globalSetup.
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default'],
  },
});
