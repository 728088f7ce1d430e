import { z } from 'zod';
import { APK_KEY_ROLES, type ApkKeyRole } from '../formats/apk/known-signers.ts';
import { APP_ROLE_NAMES, ROLE_META_DATA } from './app-roles.ts';
import { parseSize, SIZE_PATTERN } from './size.ts';

/**
 * Schemas of every YAML file. Objects are strict: an unknown key is an error, so typos are caught.
 * JSON Schemas in spec/schemas/ are generated from these (`omie schemas --write`).
 */

export const size = z
  .union([
    z.number().int().nonnegative(),
    z.string().regex(SIZE_PATTERN, 'a size like 4096, "64MiB" or "1GiB"'),
  ])
  .transform((v) => parseSize(v) as number)
  .describe('bytes, or a string with a unit: K/KiB/M/MiB/G/GiB (powers of 1024), KB/MB/GB (powers of 1000)');

const name = z.string().regex(/^[a-z0-9_]+$/, 'lower-case letters, digits and _');
const packageName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$/, 'a Java package name like org.omie.wallet');
const packagePattern = z
  .string()
  .regex(/^[A-Za-z0-9_.*?]+$/, 'a package name or glob like com.google.android.*');
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, '64 lower-case hex digits');
const permission = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_.]*$/, 'a permission name like android.permission.INTERNET');

export const avbAlgorithm = z.enum([
  'NONE',
  'SHA256_RSA2048',
  'SHA256_RSA4096',
  'SHA256_RSA8192',
  'SHA512_RSA2048',
  'SHA512_RSA4096',
  'SHA512_RSA8192',
]);

export const deviceSchema = z
  .strictObject({
    vendor: name.describe('vendor folder name'),
    codename: name.describe('device codename (folder name)'),
    name: z.string().min(1).describe('marketing name'),
    fastboot: z.strictObject({
      products: z
        .array(z.string().min(1))
        .min(1)
        .describe('values of `fastboot getvar product` this profile accepts'),
      bootloaderVersions: z
        .array(z.string())
        .default([])
        .describe('accepted version-bootloader values; empty = any'),
      maxDownloadSize: size.optional(),
    }),
    ab: z.boolean().describe('A/B (seamless) slots'),
    partitions: z
      .array(
        z.strictObject({
          name,
          fs: z.enum(['ext4', 'erofs', 'raw']),
          location: z.enum(['physical', 'super']),
          size: size.describe('partition size (for logical partitions: the largest allowed)'),
        }),
      )
      .min(1),
    super: z
      .strictObject({
        name: name.default('super'),
        blockDevices: z.array(z.strictObject({ name, size, alignment: size.default(1024 * 1024) })).min(1),
        metadataSlots: z.number().int().min(1).max(3),
        metadataMaxSize: size.default(65536),
        groups: z.array(z.strictObject({ name, maxSize: size, partitions: z.array(name).min(1) })).min(1),
      })
      .optional(),
    avb: z.strictObject({
      algorithm: avbAlgorithm,
      rollbackIndex: z.number().int().nonnegative().default(0),
      footers: z
        .array(
          z.strictObject({
            partition: name,
            type: z.enum(['hashtree', 'hash']),
            hashAlgorithm: z.enum(['sha1', 'sha256', 'sha512']).default('sha256'),
          }),
        )
        .default([]),
      chained: z
        .array(
          z.strictObject({
            partition: name.describe('the chained vbmeta partition, e.g. vbmeta_system'),
            rollbackIndexLocation: z.number().int().min(1),
            partitions: z.array(name).min(1),
          }),
        )
        .default([]),
    }),
    bootloader: z.strictObject({
      unlock: z.array(z.string()).default(['flashing unlock']),
      lock: z.array(z.string()).default(['flashing lock']),
    }),
    ota: z
      .strictObject({
        compression: z
          .enum(['xz', 'zstd'])
          .default('xz')
          .describe(
            'operation data of OTAs: xz (REPLACE_XZ, any update_engine) or zstd (REPLACE_ZSTD, Android 12+)',
          ),
        virtualAb: z
          .strictObject({
            compression: z
              .enum(['none', 'gz', 'lz4', 'zstd', 'brotli'])
              .optional()
              .describe('compressed snapshots (Virtual A/B compression) and their algorithm'),
          })
          .optional()
          .describe('the device updates through Virtual A/B snapshots'),
      })
      .optional()
      .describe('how OTA packages for this device are made (`omie ota`)'),
  })
  .describe('device/<vendor>/<codename>/device.yaml: a tablet model');

/** A reference to a key: never the secret itself. */
export const keyRef = z.union([
  z.strictObject({ file: z.string().min(1).describe('path to a key file (outside the repo)') }),
  z.strictObject({
    name: z.string().min(1).describe('a key in $OMIE_HOME/keys/<name>/ (see `omie keys init`)'),
  }),
  z.strictObject({
    env: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/)
      .describe('environment variable holding the key file path'),
  }),
]);

const waiver = z.strictObject({
  id: z.string().regex(/^\d+(\.\d+)*\/C-\d+-\d+$/, 'a requirement ID like 3.2/C-1-1'),
  reason: z.string().min(1),
  expires: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date YYYY-MM-DD'),
});

const url = z.string().regex(/^[a-z][a-z0-9+.-]*:\/\/\S+$/, 'a URL');

export const productSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case name like omie-tablet'),
    version: z.string().regex(/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/, 'a semantic version like 1.0.0'),
    device: z
      .string()
      .default('../device.yaml')
      .describe('path to the device profile, relative to this file'),
    base: z
      .strictObject({
        path: z.string().optional(),
        url: url.optional(),
        sha256: sha256.optional(),
        kind: z.enum(['auto', 'images', 'sparse', 'super', 'factory-zip', 'ota']).default('auto'),
      })
      .optional(),
    identity: z.strictObject({
      brand: z.string().min(1),
      manufacturer: z.string().min(1),
      model: z.string().min(1),
      device: z.string().min(1),
      name: z.string().min(1),
    }),
    removals: z
      .strictObject({
        defaults: z.boolean().default(true).describe('remove the default Google set'),
        packages: z.array(packageName).default([]),
        patterns: z.array(packagePattern).default([]),
        keep: z.array(packageName).default([]),
      })
      .default({ defaults: true, packages: [], patterns: [], keep: [] }),
    apps: z
      .array(z.string().regex(/^[A-Za-z0-9_-]+$/))
      .default([])
      .describe('folders of prebuilt-apps/'),
    overlays: z
      .array(z.string().regex(/^[a-z0-9-]+$/))
      .default([])
      .describe('folders of overlays/'),
    endpoints: z
      .strictObject({
        captivePortalHttpsUrl: url,
        captivePortalHttpUrl: url,
        captivePortalFallbackUrls: z.array(url).default([]),
        ntpServer: z.string().min(1),
        suplHost: z.string().min(1).nullable().default(null),
        suplPort: z.number().int().min(1).max(65535).default(7275),
        dnsServers: z.array(z.string()).default([]),
        networkLocationProvider: packageName.nullable().default(null),
        geocoderProvider: packageName.nullable().default(null),
        webviewProviders: z
          .array(z.strictObject({ package: packageName, description: z.string() }))
          .default([]),
      })
      .optional(),
    personalCloud: z
      .strictObject({
        app: z.string().describe('the prebuilt-apps folder of the personal-cloud app'),
        providers: z
          .array(
            z.strictObject({
              kind: z.enum(['webdav', 'nextcloud', 'solid', 'remotestorage', 'local']),
              label: z.string(),
              endpointTemplate: z.string().optional(),
            }),
          )
          .min(1),
        defaultRemote: z.string().nullable().default(null).describe('no default remote unless set'),
      })
      .optional(),
    properties: z
      .strictObject({
        set: z
          .record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String))
          .default({}),
        remove: z.array(z.string()).default([]),
      })
      .default({ set: {}, remove: [] }),
    signing: z.strictObject({
      avbKey: keyRef,
      apkKey: keyRef.describe(
        'signs the product apps and overlays, and re-signs base APKs of every key role apkKeys does not name',
      ),
      apkKeys: z
        .strictObject(
          Object.fromEntries(APK_KEY_ROLES.map((r) => [r, keyRef.optional()])) as Record<
            ApkKeyRole,
            z.ZodOptional<typeof keyRef>
          >,
        )
        .optional()
        .describe(
          "a key per AOSP key role (as sign_target_files_apks maps them): base APKs signed with the public test key of a role are re-signed with that role's key; a named key set gives its <role> key (`omie keys init <name> --roles ...`)",
        ),
      otaKey: keyRef
        .optional()
        .describe(
          'signs OTA packages and goes into the image as the trusted OTA certificate; default apkKey',
        ),
    }),
    trust: z
      .strictObject({
        baseSigners: z
          .array(
            z.union([
              z.strictObject({ sha256, reason: z.string().min(1) }),
              z.strictObject({
                cert: z.string().min(1).describe('certificate file; a leading $OMIE_HOME or ~ is expanded'),
                reason: z.string().min(1),
              }),
            ]),
          )
          .default([])
          .describe("signers of base apps (e.g. the OEM's release key) the partner vouches for"),
      })
      .default({ baseSigners: [] }),
    spec: z
      .strictObject({ profile: z.enum(['image', 'device']).default('image'), path: z.string().optional() })
      .default({ profile: 'image' }),
    waivers: z.array(waiver).default([]),
  })
  .describe('device/<vendor>/<codename>/products/<name>.yaml: one Omie product built for a device');

export const appSchema = z
  .strictObject({
    package: packageName,
    label: z.string().min(1),
    role: z
      .enum(APP_ROLE_NAMES)
      .describe(
        `what the app is for Omie (docs/app-roles.md); its APK declares the same role as <meta-data android:name="${ROLE_META_DATA}">`,
      ),
    partition: z.enum(['system', 'product', 'system_ext', 'vendor']),
    privileged: z.boolean().describe('priv-app (true) or app (false)'),
    privilegedPermissions: z
      .array(permission)
      .default([])
      .describe('becomes the privapp-permissions allowlist'),
    defaultPermissions: z
      .array(permission)
      .default([])
      .describe('granted by default (default-permissions XML)'),
    signer: z.union([
      z.strictObject({
        sha256: z.array(sha256).min(1).describe('pinned signer certificate SHA-256 digests'),
      }),
      z.strictObject({
        key: z.string().min(1).describe('a named local key whose certificate digest is the pin'),
      }),
    ]),
    apk: z
      .union([
        z.strictObject({ file: z.string().min(1), sha256 }),
        z.strictObject({
          file: z.string().min(1),
          generated: z.literal(true).describe('built by `omie sample-apps`, pinned at generation'),
        }),
      ])
      .describe(
        'the APK, or a .apex / .capex for a platform module (an APEX, e.g. the AOSP build of a Mainline module: role system, not privileged)',
      ),
    internet: z
      .strictObject({ reason: z.string().min(10) })
      .optional()
      .describe('required when the app holds INTERNET'),
    source: z
      .strictObject({
        generator: z.string().optional(),
        url: url.optional(),
        description: z.string().optional(),
      })
      .optional(),
  })
  .describe('prebuilt-apps/<App>/app.yaml: one bundled app, its role and pins');

export const overlaySchema = z
  .strictObject({
    package: packageName,
    target: z.union([z.literal('android'), packageName]).default('android'),
    partition: z.enum(['system', 'product', 'system_ext', 'vendor']).default('product'),
    priority: z.number().int().default(1),
    description: z.string().optional(),
    /** Resource values; strings may use {{endpoints.x}} / {{identity.x}} templates filled from the product. */
    values: z
      .array(
        z.strictObject({
          type: z.enum(['string', 'bool', 'integer', 'string-array']),
          name: z.string().regex(/^[A-Za-z0-9_]+$/),
          value: z.union([z.string(), z.boolean(), z.number(), z.array(z.string())]),
        }),
      )
      .default([]),
    /** XML resources (res/xml/<name>.xml), e.g. config_webview_packages; {{…}} templates are filled. */
    xml: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[a-z0-9_]+$/, 'a resource name like config_webview_packages'),
          file: z.string().min(1).describe('the XML source, relative to the overlay folder'),
        }),
      )
      .default([])
      .describe('XML resources compiled into res/xml/ (aapt, against the base framework-res)'),
  })
  .refine((o) => o.values.length + o.xml.length > 0, {
    message: 'an overlay needs values: or xml: resources',
    path: ['values'],
  })
  .describe('overlays/<name>/overlay.yaml: a runtime resource overlay');

export type DeviceYaml = z.output<typeof deviceSchema>;
export type ProductYaml = z.output<typeof productSchema>;
export type AppYaml = z.output<typeof appSchema>;
export type OverlayYaml = z.output<typeof overlaySchema>;

/** Every schema with the file it validates and where its JSON Schema is written. */
export const modelSchemas = {
  device: { schema: deviceSchema, json: 'spec/schemas/device.schema.json' },
  product: { schema: productSchema, json: 'spec/schemas/product.schema.json' },
  app: { schema: appSchema, json: 'spec/schemas/app.schema.json' },
  overlay: { schema: overlaySchema, json: 'spec/schemas/overlay.schema.json' },
} as const;
export type ModelKind = keyof typeof modelSchemas;
