// Bad input from the page gets the hub's documented error, shown to the user. The hub's
// --max-message-size is 1024 bytes here.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHub,
  launchBrowser,
  openDemo,
  waitOpen,
  sendChat,
  waitChat,
  waitNotice,
  unique,
  WAIT_MS,
} from './harness.mjs';

describe('hub errors shown on the page', () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args: ['--max-message-size', '1024'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  it('an oversized chat message over WebSocket: close 1009 message_too_large, then Reconnect', async () => {
    const page = await openDemo(browser, hub);
    await waitOpen(page, 'websocket');
    await sendChat(page, 'x'.repeat(2000));
    const text = await waitNotice(page, 'error', /message_too_large/);
    assert.match(text, /1009/);
    await page.waitForFunction(() => document.body.dataset.state === 'closed', null, { timeout: WAIT_MS });
    // The protocol says "do not reconnect" automatically; the user can.
    await page.click('#reconnect-btn');
    await waitOpen(page, 'websocket');
    const ok = unique('fits');
    await sendChat(page, ok);
    await waitChat(page, ok);
    await page.context().close();
  });

  it('an oversized chat message over long-poll: HTTP 413 message_too_large, session stays up', async () => {
    const page = await openDemo(browser, hub, { query: '?transport=longpoll' });
    await waitOpen(page, 'longpoll');
    await sendChat(page, 'y'.repeat(2000));
    const text = await waitNotice(page, 'error', /message_too_large/);
    assert.match(text, /Message not sent/);
    // The rejected text stays in the box so it can be fixed.
    assert.equal((await page.inputValue('#chat-input')).length, 2000);
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'open');
    const ok = unique('fits');
    await sendChat(page, ok);
    await waitChat(page, ok);
    await page.context().close();
  });

  it('publishing on a channel clients may not publish to is rejected with publish_forbidden', async () => {
    const page = await openDemo(browser, hub);
    const code = await page.evaluate(() =>
      window.crier.publish('notifications', { title: 'nope' }).then(
        () => 'published',
        (e) => e.code,
      ),
    );
    assert.equal(code, 'publish_forbidden');
    await page.context().close();
  });
});
