/**
 * The status page at `/`: what the mirror holds, how fresh it is, the last
 * sync runs, and the command that points MAAS at it. One HTML document
 * rendered on the server, its CSS and charts inline (air-gapped sites have no
 * CDN); every string that comes from upstream metadata or the catalog is
 * escaped, and the Content-Security-Policy refuses any script but the page's
 * own one.
 */
import { createHash } from 'node:crypto';
import { PUBLISHED_KEYRING } from '../core/published-files.ts';
import { CHANNELS_PATH_PREFIX, DEFAULT_CHANNEL, type SyncRun } from '../core/ports.ts';
import { RESIGNED_MAAS_KEYRING } from '../core/settings.ts';
import { formatBytes, formatDuration } from './format.ts';
import type { PackageChangeSummary, PageChannel, PageImage, RunProgress, StatusPageReport } from './reports.ts';

export interface StatusPageContext {
  /** This mirror's base URL as the client reached it, ending in `/`; undefined when the request does not say. */
  mirrorUrl: string | undefined;
  /** The keyring MAAS checks a verbatim publication with: the upstream's, whose signatures the mirror serves unchanged. */
  keyringFilename: string;
  now: Date;
  /** While a sync runs, the page reloads itself this often. */
  refreshSeconds: number;
}

/** Runs drawn in the charts, oldest on the left. */
const CHART_RUNS = 10;
const MIRROR_URL_PLACEHOLDER = 'http://THIS-MIRROR/';

/**
 * Where a MAAS installed from the deb keeps its data (MAAS_DATA); the snap's
 * is under /var/snap/maas/common, as RESIGNED_MAAS_KEYRING.
 */
const DEB_MAAS_KEYRING = `/var/lib/maas/${RESIGNED_MAAS_KEYRING.slice(RESIGNED_MAAS_KEYRING.lastIndexOf('/') + 1)}`;
/** The file name the `keyring_data` command downloads the mirror's keyring to, in the working directory. */
const DOWNLOADED_KEYRING = 'skystreams-keyring.gpg';

/**
 * The only script on the page; the CSP names it by hash. Behind a proxy
 * (CloudFront in front of API Gateway) the server may not see the name the
 * browser used, so it sets the commands' URL from the address bar. It also
 * shows the copy buttons, hidden without script: the Clipboard API where
 * the page is a secure context, the selection copied otherwise (a mirror on
 * plain http inside a site's network).
 */
const PAGE_SCRIPT =
  "document.querySelectorAll('[data-mirror-url]').forEach(function(e){e.textContent=location.origin+'/';});" +
  "document.querySelectorAll('button[data-copy]').forEach(function(b){b.hidden=false;b.addEventListener('click',function(){" +
  "var c=document.getElementById(b.getAttribute('data-copy'));var t=c.textContent;" +
  "var done=function(){b.textContent='Copied';},failed=function(){b.textContent='Select and copy';};" +
  "if(navigator.clipboard){navigator.clipboard.writeText(t).then(done,failed);return;}" +
  "getSelection().selectAllChildren(c);try{document.execCommand('copy')?done():failed();}catch(e){failed();}});});";
const PAGE_SCRIPT_HASH = createHash('sha256').update(PAGE_SCRIPT).digest('base64');

/** The page's Content-Security-Policy: nothing loads from elsewhere, nothing runs but PAGE_SCRIPT. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  "style-src 'unsafe-inline'",
  `script-src 'sha256-${PAGE_SCRIPT_HASH}'`,
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const STYLE = `
:root{color-scheme:light;--ink:#1a1a1a;--muted:#555;--line:#c8c8c8;--accent:#1f4e8c;--ok:#17623a;--ok-bg:#e3f3e8;--bad:#8a1c1c;--bad-bg:#fbe7e7;--run:#6b4500;--run-bg:#fff1d6}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Ubuntu,sans-serif;color:var(--ink);background:#fff;margin:0}
main{max-width:75rem;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0 0}h2{font-size:1.25rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
p.lead{color:var(--muted);margin-top:.25rem}
table{border-collapse:collapse;width:100%;font-size:.95rem}
caption{text-align:left;color:var(--muted);padding:.25rem 0}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:#f0f0f0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
ul.versions{margin:0;padding:0;list-style:none}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9rem}
pre{background:#f4f4f4;border:1px solid var(--line);padding:.75rem;margin:.25rem 0 0;overflow-x:auto;white-space:pre-wrap;word-break:normal;overflow-wrap:normal}
.command{margin:.5rem 0 1rem}.command .arg,p code{white-space:nowrap}.command button{font:inherit;font-size:.85rem;margin-top:.25rem}
h3{font-size:1.05rem;margin:1.25rem 0 .25rem}
.state{display:inline-block;padding:0 .45rem;border-radius:.25rem;font-weight:600;font-size:.85rem}
.state-succeeded,.state-unchanged{color:var(--ok);background:var(--ok-bg)}
.state-failed,.state-abandoned{color:var(--bad);background:var(--bad-bg)}
.state-running{color:var(--run);background:var(--run-bg)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
span.muted{color:var(--muted)}
figure{margin:0;flex:1 1 22rem;max-width:36rem}figcaption{color:var(--muted);font-size:.9rem}
svg{width:100%;height:auto}
.notice{padding:.6rem .8rem;border-left:4px solid var(--run);background:var(--run-bg)}
.warning{padding:.6rem .8rem;border-left:4px solid var(--bad);background:var(--bad-bg);color:var(--bad)}
`;

export function renderStatusPage(report: StatusPageReport, context: StatusPageContext): string {
  const running = report.runs.find((run) => run.state === 'running');
  const refresh = running ? `<meta http-equiv="refresh" content="${context.refreshSeconds}">` : '';
  const url = context.mirrorUrl ?? MIRROR_URL_PLACEHOLDER;
  const sections = [
    staleWarning(report, context.now),
    runWarnings(report),
    freshnessSection(report, context.now),
    running ? progressSection(running, report.progress?.runId === running.id ? report.progress : undefined, context.now) : '',
    channelsSection(report, url),
    catalogSection(report),
    conflictsSection(report),
    runsSection(report.runs, context.now),
    packagesSection(report),
    signingSection(report, context.now),
    maasSection(report, url, context.keyringFilename),
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
${refresh}<title>skystreams mirror status</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>skystreams mirror</h1>
<p class="lead">A verified mirror of MAAS boot images (simplestreams).</p>
${sections.filter(Boolean).join('\n')}
</main>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

/** What the package index knows: how to ask about any package, and what changed between each image's two newest versions. */
function packagesSection(report: StatusPageReport): string {
  if (report.publication === null) return '';
  const ask = `<p>Which images ship a package, and which version: <code>skystreams packages NAME</code>, or
<code>GET <a href="api/v1/packages/openssl">/api/v1/packages/openssl</a></code> for any name. Changes between two versions of an image:
<code>skystreams diff PRODUCT FROM TO</code> or <code>GET /api/v1/diff/PRODUCT/FROM/TO</code>.</p>`;
  if (report.packageChanges.length === 0) {
    return `<section aria-labelledby="packages">
<h2 id="packages">Packages</h2>
${ask}
<p>No image has two versions with package manifests to compare yet.</p>
</section>`;
  }
  return `<section aria-labelledby="packages">
<h2 id="packages">Packages</h2>
${ask}
<table id="package-changes">
<caption>What each image's manifest says changed from its previous version to its newest</caption>
<thead><tr><th scope="col">Image</th><th scope="col">From → to</th><th scope="col" class="num">Added</th><th scope="col" class="num">Removed</th><th scope="col">Changed</th></tr></thead>
<tbody>
${report.packageChanges.map(packageChangeRow).join('\n')}
</tbody>
</table>
</section>`;
}

function packageChangeRow(change: PackageChangeSummary): string {
  const image = `<th scope="row">${escapeHtml(change.label)}<br><span class="muted"><code>${escapeHtml(change.product)}</code></span></th>`;
  const versions = `<td>${escapeHtml(change.from)} → ${escapeHtml(change.to)}</td>`;
  if (change.problem !== undefined) return `<tr>${image}${versions}<td colspan="3">not known: ${escapeHtml(change.problem)}</td></tr>`;
  const shown = change.changed.map((item) => `<li><code>${escapeHtml(item.package)}</code> ${escapeHtml(item.from)} → ${escapeHtml(item.to)}</li>`);
  const more = change.changedCount > change.changed.length ? `<li>and ${plural(change.changedCount - change.changed.length, 'more package', 'more packages')}</li>` : '';
  const changed = change.changedCount === 0 ? 'none' : `<ul class="versions">${shown.join('')}${more}</ul>`;
  return `<tr>${image}${versions}<td class="num">${change.added}</td><td class="num">${change.removed}</td><td>${changed}</td></tr>`;
}

/** Merged sources: each product that gave way to another source's, and why. Absent when none did. */
function conflictsSection(report: StatusPageReport): string {
  if (report.conflicts.length === 0) return '';
  const rows = report.conflicts.map((conflict) => {
    const why = {
      path: `lists <code>${escapeHtml(conflict.path ?? '')}</code>, which <code>${escapeHtml(conflict.kept.product)}</code> lists with other bytes`,
      name: `the same image to MAAS (${escapeHtml(conflict.image ?? '')}) as <code>${escapeHtml(conflict.kept.product)}</code>`,
      product: 'the same product id',
    }[conflict.reason];
    return `<tr><th scope="row"><code>${escapeHtml(conflict.product)}</code></th><td>${escapeHtml(conflict.kept.source)}</td><td>${escapeHtml(conflict.dropped.source)}</td><td>${why}</td></tr>`;
  });
  return `<section aria-labelledby="conflicts">
<h2 id="conflicts">Source conflicts</h2>
<table id="conflicts-table">
<caption>Products two sources offered: the published one comes from the source of higher priority (or listed first)</caption>
<thead><tr><th scope="col">Product</th><th scope="col">Published from</th><th scope="col">Gave way</th><th scope="col">Why</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
</section>`;
}

function freshnessSection(report: StatusPageReport, now: Date): string {
  const publication = report.publication;
  const latest = report.runs.find((run) => run.state !== 'running');
  const facts: [string, string][] = publication
    ? [
        ['Generation', String(publication.generation)],
        ['Upstream updated', escapeHtml(publication.upstreamUpdated)],
        ['Published here', timeHtml(publication.publishedAt, now)],
        ['Mode', report.mode ? MODE_DESCRIPTIONS[report.mode] : ''],
        ['Holds', `${plural(publication.itemCount, 'item')}, ${formatBytes(publication.totalBytes)}`],
      ]
    : [['Published', 'nothing yet: the first sync has not finished']];
  facts.push([
    'Last checked upstream',
    report.lastCheck ? `${timeHtml(report.lastCheck.finishedAt ?? report.lastCheck.startedAt, now)} (${stateHtml(report.lastCheck.state)})` : 'never',
  ]);
  if (latest && (latest.state === 'failed' || latest.state === 'abandoned')) {
    facts.push(['Latest run', `${stateHtml(latest.state)} ${timeHtml(latest.finishedAt ?? latest.startedAt, now)}: ${escapeHtml(latest.error ?? '')}`]);
  }
  return `<section aria-labelledby="freshness">
<h2 id="freshness">Freshness</h2>
<dl class="facts">
${facts.map(([term, value]) => `<dt>${term}</dt><dd>${value}</dd>`).join('\n')}
</dl>
</section>`;
}

function progressSection(run: SyncRun, progress: RunProgress | undefined, now: Date): string {
  const elapsedMs = now.getTime() - Date.parse(run.startedAt);
  const facts: [string, string][] = [
    ['Run', `<code>${escapeHtml(run.id)}</code>`],
    ['Started', timeHtml(run.startedAt, now)],
    ['Running for', formatDuration(elapsedMs)],
    ['Generation being built', run.generation === undefined ? 'planning' : String(run.generation)],
    ['Items already stored before', String(run.itemsPresent)],
  ];
  let bar = '';
  if (progress) {
    const fraction = progress.copyBytes > 0 ? progress.storedBytes / progress.copyBytes : 1;
    facts.push([
      'Copied',
      `${progress.storedItems} of ${plural(progress.copyItems, 'item')}, ${formatBytes(progress.storedBytes)} of ${formatBytes(progress.copyBytes)}`,
    ]);
    bar = `<p><label for="copy-progress">Copy</label> <progress id="copy-progress" max="${progress.copyBytes}" value="${progress.storedBytes}">${Math.floor(fraction * 100)}%</progress> ${Math.floor(fraction * 100)}%</p>`;
  } else {
    facts.push(['Copied', 'planning: reading and verifying upstream metadata']);
  }
  if (run.holder) facts.push(['Process', `${escapeHtml(run.holder.host)} pid ${escapeHtml(String(run.holder.pid))}`]);
  return `<section aria-labelledby="progress">
<h2 id="progress">Sync in progress</h2>
<p class="notice" role="status">A sync is running; this page reloads every few seconds until it ends. The published generation keeps being served meanwhile.</p>
${bar}
<dl class="facts">
${facts.map(([term, value]) => `<dt>${term}</dt><dd>${value}</dd>`).join('\n')}
</dl>
</section>`;
}

function catalogSection(report: StatusPageReport): string {
  if (report.images.length === 0) {
    return `<section aria-labelledby="catalog">
<h2 id="catalog">Catalog</h2>
<p>No images are published yet.</p>
</section>`;
  }
  return `<section aria-labelledby="catalog">
<h2 id="catalog">Catalog</h2>
<table id="catalog-table">
<caption>Generation ${report.generation}: ${plural(report.images.length, 'image')}; sizes per image (the GA and HWE kernels of a release share one root image)</caption>
<thead><tr><th scope="col">OS</th><th scope="col">Release</th><th scope="col">Arch</th><th scope="col">Subarch</th><th scope="col">Label</th><th scope="col">Versions</th><th scope="col" class="num">Size</th><th scope="col">Published since</th></tr></thead>
<tbody>
${report.images.map(imageRow).join('\n')}
</tbody>
</table>
</section>`;
}

function imageRow(image: PageImage): string {
  const versions = image.versions
    .map((version) => `<li><code>${escapeHtml(version.version)}</code> <span class="muted">(${plural(version.items, 'file')}, ${formatBytes(version.bytes)})</span></li>`)
    .join('');
  const newest = image.versions[0];
  return `<tr><th scope="row" title="${escapeHtml(`${image.contentId} ${image.product}`)}">${escapeHtml(image.os ?? '')}</th><td>${escapeHtml(image.release ?? '')}</td><td>${escapeHtml(image.arch ?? '')}</td><td>${escapeHtml(image.subarch ?? '')}</td><td>${escapeHtml(image.label ?? '')}</td><td><ul class="versions">${versions}</ul></td><td class="num">${formatBytes(image.totalBytes)}</td><td>${newest?.publishedSince ? isoTimeHtml(newest.publishedSince) : ''}</td></tr>`;
}

function runsSection(runs: SyncRun[], now: Date): string {
  if (runs.length === 0) {
    return `<section aria-labelledby="runs">
<h2 id="runs">Sync runs</h2>
<p>No sync has run yet.</p>
</section>`;
  }
  const charted = runs.slice(0, CHART_RUNS).reverse();
  // Whole seconds, as the table shows them: a run shown as 0s draws no bar, however few milliseconds it took.
  const durationOf = (run: SyncRun) => Math.max(0, Math.round((Date.parse(run.finishedAt ?? now.toISOString()) - Date.parse(run.startedAt)) / 1000));
  const lastRuns = charted.length === 1 ? 'the last run' : `last ${charted.length} runs (oldest left)`;
  return `<section aria-labelledby="runs">
<h2 id="runs">Sync runs</h2>
<div class="charts">
${barChart('chart-bytes', `Bytes copied, ${lastRuns}`, charted, (run) => run.bytesCopied, formatBytes)}
${barChart('chart-duration', `Duration, ${lastRuns}`, charted, durationOf, (s) => formatDuration(s * 1000))}
</div>
<table id="runs-table">
<caption>${runs.length === 1 ? 'The one run so far' : `The ${runs.length} most recent runs, newest first`}</caption>
<thead><tr><th scope="col">Started</th><th scope="col">State</th><th scope="col" class="num">Copied</th><th scope="col" class="num">Already stored</th><th scope="col" class="num">Duration</th><th scope="col">Generation</th><th scope="col">Error</th></tr></thead>
<tbody>
${runs
  .map(
    (run) =>
      `<tr><th scope="row">${timeHtml(run.startedAt, now)}</th><td>${stateHtml(run.state)}</td><td class="num">${plural(run.itemsCopied, 'item')}, ${formatBytes(run.bytesCopied)}</td><td class="num">${run.itemsPresent}</td><td class="num">${formatDuration(durationOf(run) * 1000)}${run.finishedAt ? '' : ' so far'}</td><td>${run.generation ?? ''}</td><td>${escapeHtml(run.error ?? '')}</td></tr>`,
  )
  .join('\n')}
</tbody>
</table>
</section>`;
}

/** A bar per run, scaled to the largest; each bar's exact value in its tooltip, and the table below holds them all. */
function barChart(id: string, title: string, runs: SyncRun[], value: (run: SyncRun) => number, format: (n: number) => string): string {
  const width = 400;
  const height = 140;
  const top = 18;
  const bottom = 4;
  // A fixed slot per run, so a bar's width does not depend on how many runs there have been.
  const slot = width / CHART_RUNS;
  const max = Math.max(...runs.map(value), 0);
  const bars = runs
    .map((run, index) => {
      const v = Math.max(value(run), 0);
      const h = max > 0 ? Math.max((v / max) * (height - top - bottom), v > 0 ? 1 : 0) : 0;
      const x = index * slot + slot * 0.15;
      const y = height - bottom - h;
      return `<rect class="bar" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${h.toFixed(1)}" fill="${barColor(run.state)}"><title>${escapeHtml(`${run.startedAt} ${run.state}: ${format(v)}`)}</title></rect>`;
    })
    .join('');
  return `<figure id="${id}">
<svg viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="${id}-title">
<title id="${id}-title">${escapeHtml(title)}; largest ${escapeHtml(format(max))}</title>
<line x1="0" y1="${height - bottom}" x2="${width}" y2="${height - bottom}" stroke="#767676"/>
<text x="2" y="12" font-size="12" fill="#1a1a1a">max ${escapeHtml(format(max))}</text>
${bars}
</svg>
<figcaption>${escapeHtml(title)}</figcaption>
</figure>`;
}

function barColor(state: SyncRun['state']): string {
  if (state === 'failed' || state === 'abandoned') return '#a12622';
  if (state === 'running') return '#a86a00';
  return '#1f4e8c';
}

const MODE_DESCRIPTIONS: Record<NonNullable<StatusPageReport['mode']>, string> = {
  verbatim: "verbatim: upstream's metadata and signatures, unchanged",
  're-signed': "re-signed: the mirror's own signature over upstream's metadata",
  merged: "merged: several sources' metadata, under the mirror's own signature",
};

/** The newest run's warnings (a selection MAAS cannot boot) and the mode switches of the runs listed. */
function runWarnings(report: StatusPageReport): string {
  const newest = report.runs[0];
  const warnings = (newest?.warnings ?? []).map((warning) => `<p class="warning" role="alert"><strong>Warning</strong> (run ${escapeHtml(newest!.id)}): ${escapeHtml(warning)}</p>`);
  const switches = report.runs
    .filter((run) => run.modeSwitch)
    .map((run) => `<p class="notice">Run ${escapeHtml(run.id)} switched the publishing mode from ${escapeHtml(run.modeSwitch!.from)} to ${escapeHtml(run.modeSwitch!.to)}: every MAAS needs the matching keyring.</p>`);
  return [...warnings, ...switches].join('\n');
}

/** A stale mirror's warning, first on the page: MAAS keeps importing from it without complaint. */
function staleWarning(report: StatusPageReport, now: Date): string {
  if (!report.stale) return '';
  return `<p class="warning" role="alert" id="stale"><strong>Stale</strong> since ${timeHtml(report.stale.since, now)}: ${escapeHtml(report.stale.reason)}.</p>`;
}

/** Each channel, the URL MAAS follows for it, and where it pointed before. */
function channelsSection(report: StatusPageReport, url: string): string {
  if (report.channels.length === 0) return '';
  const ordered = [...report.channels].sort((a, b) => Number(b.name === DEFAULT_CHANNEL) - Number(a.name === DEFAULT_CHANNEL) || (a.name < b.name ? -1 : 1));
  return `<section aria-labelledby="channels">
<h2 id="channels">Channels</h2>
<p>MAAS follows one channel's URL. A sync publishes to one channel; <code>skystreams promote FROM TO</code> points another at the same generation,
and <code>skystreams rollback NAME</code> points a channel back at the generation it served before. The catalog keeps where each channel pointed, not when it switched.</p>
<table id="channels-table">
<thead><tr><th scope="col">Channel</th><th scope="col">URL</th><th scope="col" class="num">Generation</th><th scope="col">Generation published</th><th scope="col">Last switched from</th><th scope="col">Can roll back to</th></tr></thead>
<tbody>
${ordered.map((channel) => channelRow(channel, url)).join('\n')}
</tbody>
</table>
</section>`;
}

function channelRow(channel: PageChannel, url: string): string {
  const own = `<code><span data-mirror-url>${escapeHtml(url)}</span>${CHANNELS_PATH_PREFIX}${escapeHtml(channel.name)}/</code>`;
  const where = channel.name === DEFAULT_CHANNEL ? `<code><span data-mirror-url>${escapeHtml(url)}</span></code> (default)<br>also ${own}` : own;
  const [previous] = channel.history;
  const switched = previous === undefined ? 'never switched' : `generation ${previous}`;
  const rollback = channel.history.length === 0 ? 'nothing' : `${channel.history.length === 1 ? 'generation' : 'generations'} ${channel.history.join(', ')}`;
  const published = channel.publishedAt ? isoTimeHtml(channel.publishedAt) : '<span class="muted">pruned</span>';
  return `<tr><th scope="row">${escapeHtml(channel.name)}</th><td>${where}</td><td class="num">${channel.generation}</td><td>${published}</td><td>${switched}</td><td>${rollback}</td></tr>`;
}

/** The mirror's signing keys, in re-signed mode: which one signs now, which are announced or kept for a while. */
function signingSection(report: StatusPageReport, now: Date): string {
  if (!report.signing || report.mode === 'verbatim' || report.signing.keys.length === 0) return '';
  const rows = report.signing.keys.map(
    (key) =>
      `<tr><th scope="row"><code>${escapeHtml(key.fingerprint)}</code></th><td>${escapeHtml(key.state)}</td><td>${key.since ? timeHtml(key.since, now) : ''}</td></tr>`,
  );
  return `<section aria-labelledby="signing">
<h2 id="signing">Signing keys</h2>
<table id="signing-keys">
<caption>The keys in the served keyring: <em>active</em> signs the metadata, <em>pending</em> will, <em>previous</em> did</caption>
<thead><tr><th scope="col">Fingerprint</th><th scope="col">State</th><th scope="col">Since</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>
</section>`;
}

/**
 * The commands that point MAAS at this mirror. A re-signed or merged
 * publication is checked with the keyring the mirror serves, which MAAS
 * takes as data (kept in its database, so every region controller of an HA
 * MAAS has it) or as a file on each region controller; a verbatim one with
 * the upstream's keyring, as configured.
 */
function maasSection(report: StatusPageReport, url: string, keyringFilename: string): string {
  const base = `<span data-mirror-url>${escapeHtml(url)}</span>`;
  const update = ['maas', '$PROFILE', 'boot-source', 'update', '1', `url=${base}`];
  const fetchTo = (path: string, sudo: boolean) => [...(sudo ? ['sudo'] : []), 'curl', '-fsSo', path, `${base}${PUBLISHED_KEYRING}`];
  const commands =
    report.mode === 're-signed' || report.mode === 'merged'
      ? `<p>This mirror signs its metadata with its own key, so MAAS checks it with the mirror's keyring, served at <code>${base}${PUBLISHED_KEYRING}</code>
(the Ubuntu cloud image keyring cannot verify it). Give it to MAAS one of two ways:</p>
<h3>In MAAS's database (every region controller has it)</h3>
${command('maas-keyring-data', [fetchTo(DOWNLOADED_KEYRING, false), [...update, 'keyring_filename=""', `keyring_data@=${DOWNLOADED_KEYRING}`]])}
<h3>As a file on each region controller</h3>
<p>MAAS installed as a snap:</p>
${command('maas-keyring-snap', [fetchTo(RESIGNED_MAAS_KEYRING, true), [...update, `keyring_filename=${RESIGNED_MAAS_KEYRING}`]])}
<p>MAAS installed from the deb packages:</p>
${command('maas-keyring-deb', [fetchTo(DEB_MAAS_KEYRING, true), [...update, `keyring_filename=${DEB_MAAS_KEYRING}`]])}`
      : `<p>On the MAAS region controller (the keyring checks the upstream signatures this mirror serves unchanged):</p>
${command('maas-keyring-file', [[...update, `keyring_filename=${escapeHtml(keyringFilename)}`]])}`;
  const example = report.images.find((image) => image.os === 'ubuntu' && image.release && image.arch);
  const [release, arch] = example ? [escapeHtml(example.release!), escapeHtml(example.arch!)] : ['RELEASE', 'ARCH'];
  return `<section aria-labelledby="maas">
<h2 id="maas">Point MAAS at this mirror</h2>
${commands}
<p>Then choose the images MAAS imports, for example:</p>
${command('maas-selections', [['maas', '$PROFILE', 'boot-source-selections', 'create', '1', 'os=ubuntu', `release=${release}`, `arches=${arch}`, "subarches='*'", "labels='*'"]])}
<p>and start the import with <code>maas $PROFILE boot-resources import</code>.</p>
</section>`;
}

/**
 * Lines of a command, each a list of arguments (HTML), in a block of its
 * own with a button that copies it (shown by the page's script). A narrow
 * window wraps a line between arguments only: browsers would otherwise
 * break a path after a `/` or a `-`.
 */
function command(id: string, lines: string[][]): string {
  const text = lines.map((line) => line.map((argument) => `<span class="arg">${argument}</span>`).join(' ')).join('\n');
  return `<div class="command"><pre><code id="${id}">${text}</code></pre><button type="button" data-copy="${id}" hidden>Copy</button></div>`;
}

function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

function stateHtml(state: SyncRun['state']): string {
  return `<span class="state state-${state}">${state}</span>`;
}

function timeHtml(iso: string, now: Date): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return escapeHtml(iso);
  return `${isoTimeHtml(iso)} (${formatDuration(now.getTime() - ms)} ago)`;
}

function isoTimeHtml(iso: string): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return escapeHtml(iso);
  const shown = new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  return `<time datetime="${escapeHtml(new Date(ms).toISOString())}">${shown}</time>`;
}

/** Text and attribute values alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
