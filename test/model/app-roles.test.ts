/**
 * The app roles are defined once (scripts/model/app-roles.ts); the schema, the spec, the docs and
 * the sample apps must say the same.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSpec } from '../../scripts/conformance/spec.ts';
import {
  APP_ROLE_NAMES,
  APP_ROLES,
  DATA_STORE_META_DATA,
  PERSONAL_CLOUD_PERMISSION,
  ROLE_META_DATA,
} from '../../scripts/model/app-roles.ts';
import { ROOT } from '../helpers.ts';

describe('app roles', () => {
  it('the published app schema lists exactly the defined roles and names the meta-data', () => {
    const schema = JSON.parse(readFileSync(resolve(ROOT, 'spec/schemas/app.schema.json'), 'utf8'));
    expect(schema.properties.role.enum).toEqual(APP_ROLE_NAMES);
    expect(schema.properties.role.description).toContain(ROLE_META_DATA);
  });

  it('docs/app-roles.md has one row per role, with its pinning', () => {
    const md = readFileSync(resolve(ROOT, 'docs/app-roles.md'), 'utf8');
    const rows = [...md.matchAll(/^\| `([a-z-]+)` \| .* \| (yes|no) \|$/gm)].map((m) => [m[1], m[2]]);
    expect(rows).toEqual(APP_ROLE_NAMES.map((r) => [r, APP_ROLES[r].ownerSide ? 'yes' : 'no']));
    expect(md).toContain(`android:name="${ROLE_META_DATA}"`);
    expect(md).toContain(`android:name="${DATA_STORE_META_DATA}"`);
    expect(md).toContain(`android:name="${PERSONAL_CLOUD_PERMISSION}"`);
  });

  it('the spec names the same meta-data and permission', async () => {
    const spec = await loadSpec(resolve(ROOT, 'spec'));
    const text = readFileSync(resolve(ROOT, 'spec/requirements/personal-cloud.yaml'), 'utf8');
    expect(text).toContain(`\`${ROLE_META_DATA}\``);
    const dataStore = spec.requirements.find((r) => r.id === '4.3/C-0-2');
    expect(dataStore?.params).toMatchObject({
      metaDataName: DATA_STORE_META_DATA,
      permission: PERSONAL_CLOUD_PERMISSION,
    });
  });
});
