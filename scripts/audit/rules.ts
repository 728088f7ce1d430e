/**
 * Health warnings for apps on an Omie: what could breach the customer side of the device.
 * IDs are stable (tools and installers key on them); wording is for owners, not engineers.
 */
export type Severity = 'high' | 'medium' | 'low';

export interface AuditRule {
  id: string;
  severity: Severity;
  title: string;
  /** One line a non-engineer understands. */
  explanation: string;
}

export const AUDIT_RULES = {
  tracker: {
    id: 'OMIE-AUDIT-TRACKER',
    severity: 'high',
    title: 'Contains tracking code',
    explanation:
      'The app includes code from a company whose business is collecting data about people who use apps.',
  },
  identity: {
    id: 'OMIE-AUDIT-IDENTITY',
    severity: 'high',
    title: 'Can read who you are',
    explanation: 'The app asks for your phone number, device identifiers or the accounts on this tablet.',
  },
  location: {
    id: 'OMIE-AUDIT-LOCATION',
    severity: 'medium',
    title: 'Can see where you are',
    explanation: 'The app asks to know the location of this tablet.',
  },
  backgroundLocation: {
    id: 'OMIE-AUDIT-LOCATION-BACKGROUND',
    severity: 'high',
    title: 'Can follow where you go',
    explanation: 'The app asks to know your location even while you are not using it.',
  },
  contacts: {
    id: 'OMIE-AUDIT-CONTACTS',
    severity: 'medium',
    title: 'Can read your contacts and messages',
    explanation: 'The app asks to read the people you know, your call history or your text messages.',
  },
  microphone: {
    id: 'OMIE-AUDIT-MICROPHONE',
    severity: 'medium',
    title: 'Can listen',
    explanation: 'The app asks to record sound with the microphone.',
  },
  camera: {
    id: 'OMIE-AUDIT-CAMERA',
    severity: 'medium',
    title: 'Can take pictures and video',
    explanation: 'The app asks to use the camera.',
  },
  background: {
    id: 'OMIE-AUDIT-BACKGROUND',
    severity: 'low',
    title: 'Runs when you are not using it',
    explanation: 'The app asks to start by itself or keep running in the background.',
  },
  cleartext: {
    id: 'OMIE-AUDIT-CLEARTEXT',
    severity: 'medium',
    title: 'Sends data unencrypted',
    explanation:
      'The app may send information over the network without encryption, where others can read it.',
  },
  testKey: {
    id: 'OMIE-AUDIT-SIGNER-TEST-KEY',
    severity: 'high',
    title: 'Signed with a public key',
    explanation:
      'The app is signed with a key anyone can download, so anyone could publish a fake update of it.',
  },
  debugKey: {
    id: 'OMIE-AUDIT-SIGNER-DEBUG',
    severity: 'high',
    title: 'Signed with a developer test key',
    explanation: 'The app is signed with a throw-away developer key, not a real publisher key.',
  },
  signature: {
    id: 'OMIE-AUDIT-SIGNATURE-INVALID',
    severity: 'high',
    title: 'Signature does not check out',
    explanation: 'The app is unsigned or was changed after it was signed; it cannot be trusted.',
  },
  debuggable: {
    id: 'OMIE-AUDIT-DEBUGGABLE',
    severity: 'high',
    title: 'Built for debugging',
    explanation: 'The app lets other tools look inside it and change what it does.',
  },
  testOnly: {
    id: 'OMIE-AUDIT-TEST-ONLY',
    severity: 'medium',
    title: 'A test build',
    explanation: 'The app is marked as a test version, not a release.',
  },
  exported: {
    id: 'OMIE-AUDIT-EXPORTED-UNPROTECTED',
    severity: 'medium',
    title: 'Open to other apps without a lock',
    explanation: 'Parts of the app can be started or read by any other app, with no permission needed.',
  },
  backup: {
    id: 'OMIE-AUDIT-BACKUP-NON-OWNER',
    severity: 'medium',
    title: 'Backs up to someone else’s cloud',
    explanation: 'The app lets its data be backed up to a cloud service that is not your personal cloud.',
  },
} as const satisfies Record<string, AuditRule>;

export type RuleKey = keyof typeof AUDIT_RULES;

/** Permission groups that reach the owner's identity, location, contacts, mic, camera, background. */
export const PERMISSION_GROUPS: Record<
  'identity' | 'location' | 'backgroundLocation' | 'contacts' | 'microphone' | 'camera' | 'background',
  string[]
> = {
  identity: [
    'android.permission.READ_PHONE_STATE',
    'android.permission.READ_PHONE_NUMBERS',
    'android.permission.READ_PRIVILEGED_PHONE_STATE',
    'android.permission.GET_ACCOUNTS',
    'com.google.android.gms.permission.AD_ID',
    'android.permission.ACCESS_WIFI_STATE',
  ],
  location: ['android.permission.ACCESS_FINE_LOCATION', 'android.permission.ACCESS_COARSE_LOCATION'],
  backgroundLocation: ['android.permission.ACCESS_BACKGROUND_LOCATION'],
  contacts: [
    'android.permission.READ_CONTACTS',
    'android.permission.WRITE_CONTACTS',
    'android.permission.READ_CALL_LOG',
    'android.permission.READ_SMS',
    'android.permission.RECEIVE_SMS',
    'android.permission.READ_CALENDAR',
  ],
  microphone: ['android.permission.RECORD_AUDIO'],
  camera: ['android.permission.CAMERA'],
  background: [
    'android.permission.RECEIVE_BOOT_COMPLETED',
    'android.permission.FOREGROUND_SERVICE',
    'android.permission.REQUEST_IGNORE_BATTERY_OPTIMIZATIONS',
    'android.permission.SYSTEM_ALERT_WINDOW',
    'android.permission.SCHEDULE_EXACT_ALARM',
  ],
};
