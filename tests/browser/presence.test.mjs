// Who's online in the demo's chat room: two pages (separate browser contexts) see each other
// join, and one sees the other leave; after a reconnect the list is read again.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHub, launchBrowser, openDemo, WAIT_MS } from './harness.mjs';

async function onlineCount(page, count) {
  await page.waitForFunction((n) => document.querySelector('#online')?.dataset.count === String(n), count, {
    timeout: WAIT_MS,
  });
}

describe("who's online", () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args: ['--presence-batch', '50ms'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  for (const transport of ['websocket', 'longpoll']) {
    it(`lists the members of the room and follows joins and leaves (${transport})`, async () => {
      const query = transport === 'longpoll' ? '?transport=longpoll' : '';
      const alice = await openDemo(browser, hub, { query, name: 'alice' });
      await onlineCount(alice, 1);
      const bob = await openDemo(browser, hub, { query, name: 'bob' });
      await onlineCount(bob, 2);
      await onlineCount(alice, 2);
      await bob.context().close();
      await onlineCount(alice, 1);
      // A reconnect reads the list again (joins and leaves are not replayed).
      await alice.evaluate(() => window.crier.reconnect());
      await onlineCount(alice, 1);
      assert.deepEqual(alice.pageErrors, []);
      await alice.context().close();
    });
  }
});
