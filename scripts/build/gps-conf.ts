import type { ProductYaml } from '../model/index.ts';

/** gps.conf keys that name a network server, and what the product puts there. */
const SERVER_KEYS =
  /^(NTP_SERVER|SUPL_HOST|SUPL_PORT|XTRA_SERVER_\d+|XTRA_SERVER_QUERY\w*|LONGTERM_PSDS_SERVER_\d+|NORMAL_PSDS_SERVER|REALTIME_PSDS_SERVER)\s*=/;

/**
 * Rewrites a vendor gps.conf so GNSS assistance and time come from the product's servers:
 * NTP_SERVER and SUPL_HOST/PORT from `endpoints`, and every XTRA/PSDS download server removed
 * (predicted-orbit downloads are a vendor or Google service the owner did not pick). Other lines
 * (protocol versions, locks) are kept as they are.
 */
export function rewriteGpsConf(text: string, endpoints: NonNullable<ProductYaml['endpoints']>): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!SERVER_KEYS.test(line.trim())) {
      out.push(line);
      continue;
    }
    out.push(`# ${line.trim()}  (removed by Omie: servers come from the product's endpoints)`);
  }
  while (out.length && out[out.length - 1] === '') out.pop();
  out.push(
    '',
    "# Omie: the owner's (or partner's) servers, never Google's",
    `NTP_SERVER=${endpoints.ntpServer}`,
  );
  if (endpoints.suplHost) out.push(`SUPL_HOST=${endpoints.suplHost}`, `SUPL_PORT=${endpoints.suplPort}`);
  return `${out.join('\n')}\n`;
}

/** Where vendors keep gps.conf, relative to the partition root. */
export const GPS_CONF_PATHS = [
  { partition: 'vendor', path: 'etc/gps.conf' },
  { partition: 'system', path: 'etc/gps.conf' },
] as const;
