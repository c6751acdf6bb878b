// Resume after a lost connection: nothing published while the page was away is missed when
// history covers it; a hub restart is survived (with the epoch_changed notice it implies).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHub,
  launchBrowser,
  openDemo,
  waitOpen,
  sendChat,
  waitChat,
  waitNotifications,
  waitNotice,
  publishHttp,
  unique,
  WAIT_MS,
} from './harness.mjs';

/** Drop the page's connection and keep it down until `reconnect()`. */
async function dropAndStayDown(page) {
  await page.evaluate(() => window.crier._dropConnection({ stayDown: true }));
  await page.waitForFunction(() => document.body.dataset.state === 'reconnecting', null, { timeout: WAIT_MS });
}

describe('reconnect and resume', () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args: ['--history-size', '100'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  for (const transport of ['websocket', 'longpoll']) {
    it(`messages published while the page was disconnected appear after resume (${transport})`, async () => {
      const query = transport === 'longpoll' ? '?transport=longpoll' : '';
      const page = await openDemo(browser, hub, { query });
      await waitOpen(page, transport);
      const titles = [unique('n1')];
      await publishHttp(hub, 'notifications', { title: titles[0] });
      await waitNotifications(page, 1);
      const chat = unique('chat before drop');
      await sendChat(page, chat);
      await waitChat(page, chat);

      await dropAndStayDown(page);
      for (let i = 2; i <= 4; i++) {
        titles.push(unique(`n${i}`));
        await publishHttp(hub, 'notifications', { title: titles.at(-1) });
      }
      const chatMissed = unique('chat while away');
      await publishHttp(hub, 'chat:lobby', { name: 'backend', text: chatMissed });
      // Nothing arrives while down.
      assert.equal(await page.$$eval('#notif-list .notif', (els) => els.length), 1);

      await page.evaluate(() => window.crier.reconnect());
      await waitOpen(page, transport);
      assert.deepEqual(await waitNotifications(page, 4), titles, 'all four, in order, once each');
      await waitChat(page, chatMissed);
      assert.equal(await page.textContent('#reconnects'), '1');
      assert.equal(await page.$$eval('#notices .notice[data-kind="missed"]', (els) => els.length), 0);

      // Live messages keep flowing after the catch-up, with no duplicate.
      titles.push(unique('n5'));
      await publishHttp(hub, 'notifications', { title: titles.at(-1) });
      assert.deepEqual(await waitNotifications(page, 5), titles);
      assert.deepEqual(page.pageErrors, []);
      await page.context().close();
    });
  }

  it('pages reconnect after the hub restarts on the same port', async () => {
    const ws = await openDemo(browser, hub);
    const lp = await openDemo(browser, hub, { query: '?transport=longpoll' });
    await waitOpen(ws, 'websocket');
    await waitOpen(lp, 'longpoll');
    const before = unique('before restart');
    await publishHttp(hub, 'notifications', { title: before });
    await waitNotifications(ws, 1);
    await waitNotifications(lp, 1);

    const { port, args } = hub;
    await hub.stop('SIGTERM');
    for (const page of [ws, lp]) {
      await page.waitForFunction(() => document.body.dataset.state === 'reconnecting', null, { timeout: WAIT_MS });
    }
    hub = await startHub({ args, port });

    for (const page of [ws, lp]) {
      await page.waitForFunction(() => document.body.dataset.state === 'open' && window.crier.reconnects >= 1, null, {
        timeout: WAIT_MS * 2,
      });
      // A new process numbers channels afresh: the client is told, not silently reset.
      await waitNotice(page, 'missed', /notifications.*restarted/);
    }

    const after = unique('after restart');
    await publishHttp(hub, 'notifications', { title: after });
    assert.deepEqual(await waitNotifications(ws, 2), [before, after]);
    assert.deepEqual(await waitNotifications(lp, 2), [before, after]);

    const text = unique('chat after restart');
    await sendChat(ws, text);
    await waitChat(lp, text);
    await ws.context().close();
    await lp.context().close();
  });
});
