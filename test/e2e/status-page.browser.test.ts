/**
 * The status page in a real browser: Debian's Chromium driven by
 * playwright-core, against a freshly synced demo mirror and a re-signed copy
 * of it. The screenshots land in test-results/ for a person to look at.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { SigningKeyFile } from '../../functions/adapters/fs/signing-key-file.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { SyncEngine } from '../../functions/core/engine.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { loadKeyring } from '../../functions/core/pgp.ts';
import type { Backend } from '../../functions/core/ports.ts';
import { defaultEngineSettings } from '../../functions/core/settings.ts';
import { createApp } from '../../functions/http/app.ts';
import { startServer, type RunningServer } from '../../functions/local/server.ts';
import { startDemoMirror, type DemoMirror } from '../support/demo-mirror.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = 'test-results/status-page.png';
const RESIGNED_SCREENSHOT = 'test-results/status-page-resigned.png';

let mirror: DemoMirror;
/** The demo upstream synced again into a second mirror, re-signed, and served. */
let resigned: { backend: Backend; server: RunningServer };
let browser: Browser;
let page: Page;
/** Console errors and failed requests, each as a line. */
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`the status page's browser test needs Chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run installs it on CI)`);
  }
  mirror = await startDemoMirror();
  resigned = await startResignedMirror(mirror);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await resigned?.server.close();
  await resigned?.backend.close();
  await mirror?.close();
});

async function startResignedMirror(demo: DemoMirror): Promise<{ backend: Backend; server: RunningServer }> {
  const dataDir = join(demo.dataDir, '..', 'resigned');
  const backend = openEmbeddedBackend(dataDir);
  const engine = new SyncEngine(
    { upstream: new HttpUpstream(demo.upstreamUrl), objects: backend.objects, catalog: backend.catalog, sleep: async () => {}, signingKeys: new SigningKeyFile(join(dataDir, 'keys.json')) },
    {
      ...defaultEngineSettings,
      keyring: await loadKeyring('demo keyring', await readFile(demo.keyringFile)),
      selection: { filters: [parseFilter('arch=amd64')], max: 1 },
      resign: true,
    },
  );
  const run = await engine.run();
  if (run.state !== 'succeeded') throw new Error(`the re-signed sync ended ${run.state}: ${run.error}`);
  return { backend, server: await startServer(createApp(backend), { port: 0, host: '127.0.0.1' }) };
}

describe('Status page in Chromium', () => {
  it('shows the synced catalog, the last run and the MAAS command, with no console error, and is screenshotted', async () => {
    // Act
    const response = await page.goto(mirror.url, { waitUntil: 'load' });

    // Assess
    expect(response?.status()).toBe(200);
    expect(await page.title()).toBe('skystreams mirror status');
    const images = (await (await fetch(`${mirror.url}api/v1/images`)).json()) as { images: { release?: string; subarch?: string }[] };
    const catalogRows = page.locator('#catalog-table tbody tr');
    expect(await catalogRows.count()).toBe(images.images.length);
    expect(images.images.length).toBeGreaterThan(1);
    for (const [index, image] of images.images.entries()) {
      const cells = await catalogRows.nth(index).locator('th, td').allInnerTexts();
      expect(cells[1]).toBe(image.release ?? '');
      expect(cells[3]).toBe(image.subarch ?? '');
    }
    const lastRun = await page.locator('#runs-table tbody tr').first().locator('th, td').allInnerTexts();
    expect(lastRun[1]).toBe('succeeded');
    expect(lastRun[2]).toContain(`${mirror.run.itemsCopied} items`);
    expect(await page.locator('#chart-bytes rect.bar').count()).toBe(1);
    // The page's one script set the command's URL from the address bar.
    expect(new Set(await page.locator('[data-mirror-url]').allInnerTexts())).toEqual(new Set([mirror.url]));
    expect(await page.locator('#maas-keyring-file').innerText()).toMatch(/^maas \$PROFILE boot-source update 1 url=http:\/\/127\.0\.0\.1:\d+\/ keyring_filename=\//);
    expect(problems).toEqual([]);
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });

  it("gives a re-signed mirror's commands whole, each with a copy button that copies it, and is screenshotted", async () => {
    // Prepare
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: resigned.server.url.replace(/\/$/, '') });
    const resignedPage = await context.newPage();
    const errors: string[] = [];
    resignedPage.on('pageerror', (error) => errors.push(error.message));
    resignedPage.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });

    // Act
    await resignedPage.goto(resigned.server.url, { waitUntil: 'load' });
    const commands = await resignedPage.locator('.command code').allInnerTexts();
    const button = resignedPage.locator('button[data-copy="maas-keyring-data"]');
    await button.click();
    const copied = await resignedPage.evaluate(() => navigator.clipboard.readText());

    // Assess
    expect(commands).toHaveLength(4);
    expect(commands[0]).toBe(
      `curl -fsSo skystreams-keyring.gpg ${resigned.server.url}keyring.gpg\nmaas $PROFILE boot-source update 1 url=${resigned.server.url} keyring_filename="" keyring_data@=skystreams-keyring.gpg`,
    );
    expect(copied).toBe(commands[0]);
    expect(await button.innerText()).toBe('Copied');
    // No line of a command is broken inside a word, in a wide window or a narrow one where they wrap.
    for (const width of [1280, 420]) {
      await resignedPage.setViewportSize({ width, height: 900 });
      for (const id of ['maas-keyring-data', 'maas-keyring-snap', 'maas-keyring-deb']) {
        const wrapsInsideWords = await resignedPage.evaluate((codeId) => {
          const code = document.getElementById(codeId)!;
          const text = code.textContent ?? '';
          const range = document.createRange();
          const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
          let offset = 0;
          let previousTop: number | undefined;
          const breaks: string[] = [];
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (let i = 0; i < (node.textContent ?? '').length; i++) {
              range.setStart(node, i);
              range.setEnd(node, i + 1);
              const top = range.getClientRects()[0]?.top;
              const at = offset + i;
              if (top !== undefined && previousTop !== undefined && top > previousTop + 1 && text[at - 1] !== ' ' && text[at - 1] !== '\n' && text[at] !== '\n') {
                breaks.push(text.slice(Math.max(0, at - 10), at + 10));
              }
              if (top !== undefined) previousTop = top;
            }
            offset += (node.textContent ?? '').length;
          }
          return breaks;
        }, id);
        expect(wrapsInsideWords, id).toEqual([]);
      }
    }
    expect(errors).toEqual([]);
    await mkdir('test-results', { recursive: true });
    await resignedPage.screenshot({ path: 'test-results/status-page-resigned-narrow.png', fullPage: true });
    await resignedPage.setViewportSize({ width: 1280, height: 900 });
    await resignedPage.screenshot({ path: RESIGNED_SCREENSHOT, fullPage: true });
    await context.close();
  });

  it('loads nothing from another origin (it must work air-gapped)', async () => {
    // Prepare
    const origins = new Set<string>();
    page.on('request', (request) => origins.add(new URL(request.url()).origin));

    // Act
    await page.goto(mirror.url, { waitUntil: 'load' });

    // Assess
    expect([...origins]).toEqual([new URL(mirror.url).origin]);
  });
});
