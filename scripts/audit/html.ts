import type { AuditReport } from './schema.ts';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A self-contained page an owner can read: one card per app, the worst news first. */
export function auditHtml(r: AuditReport): string {
  const cards = r.apps
    .map((a) => {
      const items = a.warnings
        .map(
          (w) =>
            `<li class="${w.severity}"><b>${esc(w.title)}</b> <span class="sev">${w.severity}</span><br>${esc(w.explanation)}<br><small><code>${esc(w.id)}</code> — ${esc(w.details.join('; '))}</small></li>`,
        )
        .join('');
      return `<section><h2>${esc(a.label ?? a.package ?? a.file)}</h2><p><code>${esc(a.package ?? '?')}</code> ${esc(a.versionName ?? '')} — <span data-count="${a.warnings.length}">${a.warnings.length} warning(s)</span></p>${items ? `<ul>${items}</ul>` : '<p class="ok">No health warnings.</p>'}</section>`;
    })
    .join('\n');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App health report</title><style>
body{font:16px/1.4 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}
li{margin:.6rem 0;list-style:none;border-left:4px solid #999;padding-left:.6rem}
li.high{border-color:#b00}li.medium{border-color:#d80}li.low{border-color:#07a}.sev{font-size:.8em;color:#555}.ok{color:#080}
</style></head><body><h1>App health report</h1>
<p id="summary">${r.apps.length} app(s), ${r.apps.reduce((n, a) => n + a.warnings.length, 0)} warning(s)</p>
${cards}</body></html>
`;
}
