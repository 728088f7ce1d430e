import { z } from 'zod';
import type { ResolvedProduct } from '../model/index.ts';

/** Where the personal cloud app reads its sync options, relative to its partition. */
export const PERSONAL_CLOUD_CONFIG_PATH = 'etc/omie/personal-cloud.json';

/**
 * The file the personal cloud app reads at first setup: which kinds of provider the owner may
 * pick (with endpoint templates the owner fills in), and no default remote unless the product
 * deliberately sets one. The owner can always change the target: nothing here is hard-wired.
 */
export const personalCloudConfigSchema = z
  .strictObject({
    schema: z.literal('omie.personal-cloud/1'),
    package: z.string().describe('the personal cloud app'),
    ownerChangeable: z.literal(true).describe('the owner may switch provider or go local-only at any time'),
    providers: z
      .array(
        z.strictObject({
          kind: z.enum(['webdav', 'nextcloud', 'solid', 'remotestorage', 'local']),
          label: z.string(),
          endpointTemplate: z
            .string()
            .nullable()
            .describe('placeholders like {host} and {user} are filled in by the owner'),
        }),
      )
      .min(1),
    defaultRemote: z
      .string()
      .nullable()
      .describe('null: nothing leaves the tablet until the owner picks a provider'),
  })
  .describe("etc/omie/personal-cloud.json on the personal cloud app's partition");
export type PersonalCloudConfig = z.output<typeof personalCloudConfigSchema>;

/** The config file for a product, or null when the product declares no personal cloud options. */
export function personalCloudConfig(
  p: ResolvedProduct,
): { partition: ResolvedProduct['apps'][number]['partition']; json: string } | null {
  const pc = p.product.personalCloud;
  const app = p.apps.find((a) => a.role === 'personal-cloud');
  if (!pc || !app) return null;
  const cfg: PersonalCloudConfig = {
    schema: 'omie.personal-cloud/1',
    package: app.package,
    ownerChangeable: true,
    providers: pc.providers.map((x) => ({
      kind: x.kind,
      label: x.label,
      endpointTemplate: x.endpointTemplate ?? null,
    })),
    defaultRemote: pc.defaultRemote,
  };
  return {
    partition: app.partition,
    json: `${JSON.stringify(personalCloudConfigSchema.parse(cfg), null, 2)}\n`,
  };
}
