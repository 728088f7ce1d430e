/**
 * Omie app roles: the one definition read by the app.yaml schema, the sample app generator, the
 * conformance checks and the tests that hold docs/app-roles.md and the spec to it. An app states
 * its role twice: in its app.yaml (`role:`), for the build, and in its APK's manifest as the
 * application meta-data ROLE_META_DATA, so that `omie check` without a product still knows which
 * app is the personal cloud and which apps are customer-side. Add a role here, then document it
 * in docs/app-roles.md (a test compares the two).
 */

/** `<application><meta-data android:name=… android:value="<role>">` naming an app's Omie role. */
export const ROLE_META_DATA = 'org.omie.role';

/** `<application><meta-data>` by which a customer-side app names the personal cloud as its data store. */
export const DATA_STORE_META_DATA = 'org.omie.DATA_STORE';

/** The permission guarding the personal cloud's data; customer-side apps request it. */
export const PERSONAL_CLOUD_PERMISSION = 'org.omie.permission.PERSONAL_CLOUD';

export interface RoleInfo {
  /** One line for docs and messages. */
  summary: string;
  /**
   * The app works for the owner with the owner's data, so spec 4.2 holds it to its pinned
   * signer, and an APK declaring this role in its manifest must be declared in prebuilt-apps/.
   */
  ownerSide: boolean;
}

export const APP_ROLES = {
  'personal-cloud': {
    summary:
      "the owner's personal cloud: keeps the owner's data, backups and accounts where the owner chooses",
    ownerSide: true,
  },
  'customer-app': {
    summary: 'a customer-side app: works for the owner and keeps its data in the personal cloud',
    ownerSide: true,
  },
  system: {
    summary: 'a platform app the partner bundles (no owner data of its own)',
    ownerSide: false,
  },
  webview: {
    summary:
      "the WebView provider: renders the web content of every app; the build lists it in config_webview_packages in place of Google's WebView",
    ownerSide: true,
  },
  setup: {
    summary:
      "first-boot setup in place of Google's setup wizard: marks the device provisioned and setup complete (spec 2.6)",
    ownerSide: true,
  },
} as const satisfies Record<string, RoleInfo>;

export type AppRole = keyof typeof APP_ROLES;

/** Every role name, in definition order (a non-empty tuple, as z.enum wants). */
export const APP_ROLE_NAMES = Object.keys(APP_ROLES) as [AppRole, ...AppRole[]];

export function isAppRole(v: string | undefined): v is AppRole {
  return v !== undefined && Object.hasOwn(APP_ROLES, v);
}

/** The role an APK's manifest declares (ROLE_META_DATA), the raw value when it is not a known role. */
export function manifestRole(appMetaData: Record<string, string>): string | undefined {
  return appMetaData[ROLE_META_DATA];
}
