/**
 * A self-contained HTML report a person reads at a glance: the verdict and counts on top,
 * failures first, each requirement with its evidence and an anchor to its rationale. No external
 * assets (inline CSS, no scripts), so it can be attached to a CI run or mailed as one file.
 */
import type { Evidence, Report, RequirementResult } from '../spec-schema.ts';

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": '#39' }[c]};`);

/** Anchor of a requirement: `2.1/C-0-1` → `req-2.1-C-0-1`. */
export const anchor = (id: string) => `req-${id.replace(/[^A-Za-z0-9.-]/g, '-')}`;

const ORDER: Record<string, number> = { fail: 0, error: 1, waived: 2, pass: 3, 'not-applicable': 4 };
const LABEL: Record<string, string> = {
  pass: 'Pass',
  fail: 'Fail',
  error: 'Error',
  waived: 'Waived',
  'not-applicable': 'N/A',
};

function evidenceRow(e: Evidence): string {
  const where = [e.partition, e.file].filter(Boolean).join('/');
  const cells = [where, e.package ?? '', e.prop ?? '', e.value ?? '', e.detail];
  return `<tr>${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`;
}

function resultBlock(r: RequirementResult): string {
  const ev = r.evidence.length
    ? `<table class="evidence"><thead><tr><th>Where</th><th>Package</th><th>Property</th><th>Value</th><th>Detail</th></tr></thead><tbody>${r.evidence.slice(0, 200).map(evidenceRow).join('')}</tbody></table>${r.evidence.length > 200 ? `<p>${r.evidence.length - 200} more in report.json</p>` : ''}`
    : '';
  const waiver = r.waiver
    ? `<p class="waiver">Waiver (${esc(r.waiver.source)}): ${esc(r.waiver.reason)} — expires ${esc(r.waiver.expires)}${r.waiver.expired ? ' <strong>(expired)</strong>' : ''}</p>`
    : '';
  return `<section class="result ${r.status}" id="${anchor(r.id)}" data-id="${esc(r.id)}" data-status="${r.status}">
<h3><span class="badge ${r.status}">${LABEL[r.status]}</span> <a href="#${anchor(r.id)}">${esc(r.id)}</a> <span class="level">${r.level}</span> ${esc(r.title)}</h3>
<p class="message">${esc(r.message)}</p>${waiver}${ev}
<details${r.status === 'fail' || r.status === 'error' ? ' open' : ''}><summary>Why this protects the owner</summary><p class="rationale">${esc(r.rationale)}</p><p class="how"><em>How it is checked:</em> ${esc(r.howChecked)}</p></details>
</section>`;
}

export function htmlReport(report: Report): string {
  const s = report.summary;
  const sorted = [...report.results].sort(
    (a, b) => ORDER[a.status] - ORDER[b.status] || (a.level === b.level ? 0 : a.level === 'MUST' ? -1 : 1),
  );
  const verdict = s.conforms ? 'Conforms' : 'Does not conform';
  const counts = (
    [
      ['pass', s.pass],
      ['fail', s.fail],
      ['error', s.error],
      ['waived', s.waived],
      ['not-applicable', s.notApplicable],
    ] as const
  )
    .map(([k, n]) => `<li class="count ${k}"><span class="n" data-status="${k}">${n}</span> ${LABEL[k]}</li>`)
    .join('');
  const index = sorted
    .map(
      (r) =>
        `<tr class="${r.status}"><td><span class="badge ${r.status}">${LABEL[r.status]}</span></td><td><a href="#${anchor(r.id)}">${esc(r.id)}</a></td><td>${r.level}</td><td>${esc(r.title)}</td></tr>`,
    )
    .join('');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Omie conformance: ${esc(verdict)} — ${esc(report.target.input)}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:70rem;padding:1.5rem;color:#1b1f24;background:#fff}
h1{margin:0 0 .3rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de}
.verdict{font-size:1.6rem;font-weight:700;padding:.6rem 1rem;border-radius:.4rem;display:inline-block}
.verdict.ok{background:#dafbe1;color:#116329}.verdict.bad{background:#ffebe9;color:#a40e26}
ul.counts{list-style:none;padding:0;display:flex;gap:1rem;flex-wrap:wrap}
ul.counts li{border:1px solid #d0d7de;border-radius:.4rem;padding:.4rem .8rem}.n{font-size:1.4rem;font-weight:700}
.badge{font-size:.75rem;font-weight:700;padding:.1rem .45rem;border-radius:1rem;text-transform:uppercase;white-space:nowrap}
.badge.pass{background:#dafbe1;color:#116329}.badge.fail{background:#ffebe9;color:#a40e26}.badge.error{background:#fff1e5;color:#953800}
.badge.waived{background:#fff8c5;color:#7d4e00}.badge.not-applicable{background:#eaeef2;color:#57606a}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top;word-break:break-word}
th{background:#f6f8fa}section.result{border-left:4px solid #d0d7de;padding:.2rem 1rem;margin:1rem 0}
section.fail{border-color:#cf222e}section.error{border-color:#bc4c00}section.waived{border-color:#bf8700}section.pass{border-color:#2da44e}
.level{font-size:.8rem;color:#57606a}.meta{color:#57606a}.rationale{margin:.3rem 0}summary{cursor:pointer;color:#0969da}
@media print{details{display:block}}
</style>
</head>
<body>
<header>
<h1>Omie conformance report</h1>
<p class="meta">${esc(report.target.description)} · profile <strong>${report.profile}</strong> · spec ${esc(report.spec.version)} (sha256 ${esc(report.spec.sha256.slice(0, 12))}…)${report.product ? ` · product ${esc(report.product.name)} ${esc(report.product.version)}` : ''} · ${esc(report.startedAt)} · omie ${esc(report.tool.version)}</p>
<p class="verdict ${s.conforms ? 'ok' : 'bad'}" id="verdict" data-conforms="${s.conforms}">${verdict}</p>
<p>${s.mustFailed} MUST requirement(s) failed, ${s.shouldFailed} SHOULD requirement(s) failed, of ${s.total}.</p>
<ul class="counts" id="summary">${counts}</ul>
</header>
<h2>Requirements</h2>
<table class="index"><thead><tr><th>Result</th><th>ID</th><th>Level</th><th>Requirement</th></tr></thead><tbody>${index}</tbody></table>
<h2>Details</h2>
${sorted.map(resultBlock).join('\n')}
</body>
</html>
`;
}
