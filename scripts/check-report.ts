/**
 * Renders a report.html in headless Chromium (offline: the page may load nothing but itself), asserts that the
 * metrics table and the retrieval gallery are visible with every image decoded, and writes a full-page PNG.
 *
 *   npx tsx scripts/check-report.ts out/demo/report.html [screenshot.png]
 *
 * Needs Debian's chromium (`apt-get install -y chromium`); CHROMIUM overrides the path.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

interface ReportCheck {
  metricRows: number;
  galleryQueries: number;
  images: number;
  brokenImages: number;
  charts: number;
  externalRequests: string[];
  screenshot: string;
}

async function checkReport(htmlPath: string, screenshot: string): Promise<ReportCheck> {
  const profile = await mkdtemp(join(tmpdir(), 'rsclip-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ARGS,
    viewport: { width: 1200, height: 900 },
  });
  try {
    const page = await browser.newPage();
    const url = pathToFileURL(resolve(htmlPath)).href;
    const externalRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url() !== url && !r.url().startsWith('data:')) externalRequests.push(r.url());
    });
    await page.goto(url, { waitUntil: 'load' });
    await page.locator('#metrics').waitFor({ state: 'visible', timeout: 10_000 });
    await page.locator('#gallery').waitFor({ state: 'visible', timeout: 10_000 });
    const counts = await page.evaluate(() => {
      const imgs = [...document.querySelectorAll('img')];
      return {
        metricRows: document.querySelectorAll('#metrics tbody tr').length,
        galleryQueries: document.querySelectorAll('#gallery tbody tr').length,
        images: imgs.length,
        brokenImages: imgs.filter((i) => !i.complete || i.naturalWidth === 0).length,
        charts: document.querySelectorAll('.charts img').length,
      };
    });
    await page.screenshot({ path: screenshot, fullPage: true });
    return { ...counts, externalRequests, screenshot };
  } finally {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  const [html, png = 'report.png'] = argv;
  if (!html) {
    console.error('usage: npx tsx scripts/check-report.ts <report.html> [screenshot.png]');
    return 2;
  }
  const r = await checkReport(html, png);
  console.log(JSON.stringify(r));
  const problems = [
    r.metricRows < 7 && `metrics table has ${r.metricRows} rows`,
    r.galleryQueries < 1 && 'gallery has no queries',
    r.brokenImages > 0 && `${r.brokenImages} of ${r.images} images did not decode`,
    r.externalRequests.length > 0 && `page made requests: ${r.externalRequests.join(', ')}`,
  ].filter(Boolean);
  for (const p of problems) console.error(`check-report: ${p}`);
  return problems.length ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => (process.exitCode = code));
