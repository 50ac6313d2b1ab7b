/**
 * The status page in a real browser: Debian's Chromium driven by
 * playwright-core, against a freshly synced demo mirror. The screenshot lands
 * in test-results/status-page.png for a person to look at.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoMirror, type DemoMirror } from '../support/demo-mirror.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = 'test-results/status-page.png';

let mirror: DemoMirror;
let browser: Browser;
let page: Page;
/** Console errors and failed requests, each as a line. */
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`the status page's browser test needs Chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run installs it on CI)`);
  }
  mirror = await startDemoMirror();
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
  await mirror?.close();
});

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
    expect(await page.locator('[data-mirror-url]').innerText()).toBe(mirror.url);
    expect(await page.locator('pre code').innerText()).toMatch(/^maas \$PROFILE boot-source update 1 url=http:\/\/127\.0\.0\.1:\d+\/ keyring_filename=\//);
    expect(problems).toEqual([]);
    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
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
