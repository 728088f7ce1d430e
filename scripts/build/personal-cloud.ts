import type { ResolvedProduct } from '../model/index.ts';
import { type PersonalCloudConfig, personalCloudConfigSchema } from '../model/personal-cloud.ts';

export { PERSONAL_CLOUD_CONFIG_PATH } from '../model/personal-cloud.ts';

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
