/** Recognising Google hosts in URLs, host names and DNS server addresses. */

/**
 * Domains operated by Google (probes, time, DNS, location, analytics, CDNs). Android's
 * built-in defaults point at several of them: www.google.com and connectivitycheck.gstatic.com
 * (captive portal), time.android.com (NTP), supl.google.com (SUPL), 8.8.8.8 (DNS).
 */
export const GOOGLE_DOMAINS = [
  'google',
  'google.com',
  'gstatic.com',
  'googleapis.com',
  'android.com',
  'googleusercontent.com',
  'gvt1.com',
  'gvt2.com',
  'gvt3.com',
  'ggpht.com',
  'googlevideo.com',
  'googlesyndication.com',
  'googleadservices.com',
  'doubleclick.net',
  'google-analytics.com',
  'app-measurement.com',
  'crashlytics.com',
  'firebaseio.com',
  'dns.google',
];

/** Google Public DNS addresses. */
export const GOOGLE_DNS = ['8.8.8.8', '8.8.4.4', '2001:4860:4860::8888', '2001:4860:4860::8844'];

/** The host of a URL, `host:port`, or bare host name; lower case, without brackets. */
export function hostOf(value: string): string {
  let v = value.trim().toLowerCase();
  const scheme = v.indexOf('://');
  if (scheme >= 0) v = v.slice(scheme + 3);
  v = v.split(/[/?#]/)[0];
  const at = v.lastIndexOf('@');
  if (at >= 0) v = v.slice(at + 1);
  if (v.startsWith('[')) return v.slice(1, v.indexOf(']'));
  if ((v.match(/:/g) ?? []).length === 1) v = v.split(':')[0];
  return v.replace(/\.$/, '');
}

/** True when the value (URL, host, or address) names a Google server. */
export function isGoogleHost(value: string, extra: string[] = []): boolean {
  const host = hostOf(value);
  if (!host) return false;
  if (GOOGLE_DNS.includes(host)) return true;
  if (/(^|\.)google\.[a-z]{2,3}(\.[a-z]{2})?$/.test(host)) return true;
  return [...GOOGLE_DOMAINS, ...extra].some((d) => host === d || host.endsWith(`.${d}`));
}

/** Every Google host mentioned anywhere in a text (URLs or bare host names). */
export function googleHostsIn(text: string, extra: string[] = []): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(
    /[a-z][a-z0-9+.-]*:\/\/[^\s"'<>,;]+|[a-z0-9-]+(\.[a-z0-9-]+)+|[0-9a-f:]{6,}/gi,
  )) {
    if (isGoogleHost(m[0], extra)) found.add(hostOf(m[0]));
  }
  return [...found];
}
