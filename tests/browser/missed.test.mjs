// When history no longer covers what a page missed, the page says so ("missed" notice) and
// shows what history still holds. The hub keeps only 2 messages per channel here.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHub,
  launchBrowser,
  openDemo,
  waitOpen,
  waitNotifications,
  waitNotice,
  publishHttp,
  unique,
  WAIT_MS,
} from './harness.mjs';

describe('missed messages (history exhausted)', () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args: ['--history-size', '2'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  for (const transport of ['websocket', 'longpoll']) {
    it(`shows the missed notice when more was published than history holds (${transport})`, async () => {
      const query = transport === 'longpoll' ? '?transport=longpoll' : '';
      const page = await openDemo(browser, hub, { query });
      await waitOpen(page, transport);
      const first = unique('seen');
      await publishHttp(hub, 'notifications', { title: first });
      await waitNotifications(page, 1);

      // Within history (2 messages): resumed with no notice.
      await page.evaluate(() => window.crier._dropConnection({ stayDown: true }));
      await page.waitForFunction(() => document.body.dataset.state === 'reconnecting', null, { timeout: WAIT_MS });
      const covered = [unique('covered-1'), unique('covered-2')];
      for (const title of covered) await publishHttp(hub, 'notifications', { title });
      await page.evaluate(() => window.crier.reconnect());
      assert.deepEqual(await waitNotifications(page, 3), [first, ...covered]);
      assert.deepEqual(
        await page.$$eval('#notices .notice[data-kind="missed"]', (els) => els.map((e) => e.textContent)),
        [],
      );

      // Beyond history: 5 published while away, only the last 2 can be replayed.
      await page.evaluate(() => window.crier._dropConnection({ stayDown: true }));
      await page.waitForFunction(() => document.body.dataset.state === 'reconnecting', null, { timeout: WAIT_MS });
      const away = [];
      let last;
      for (let i = 1; i <= 5; i++) {
        away.push(unique(`away-${i}`));
        last = await publishHttp(hub, 'notifications', { title: away.at(-1) });
      }
      await page.evaluate(() => window.crier.reconnect());
      const text = await waitNotice(page, 'missed', /Missed messages on notifications/);
      assert.match(text, new RegExp(`showing from #${last.offset - 1}`));
      assert.deepEqual(await waitNotifications(page, 5), [first, ...covered, ...away.slice(3)]);
      await page.waitForFunction(
        (o) => Number(document.querySelector('#offsets [data-channel="notifications"]')?.dataset.offset) === o,
        last.offset,
        { timeout: WAIT_MS },
      );
      assert.deepEqual(page.pageErrors, []);
      await page.context().close();
    });
  }
});
