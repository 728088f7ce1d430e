import { z } from 'zod';

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
