// Chat between two pages on each transport, the long-poll toggle, and HTTP-published
// notifications reaching the feed. One hub (default flags) for the whole file.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHub,
  launchBrowser,
  openDemo,
  waitOpen,
  sendChat,
  waitChat,
  chatTexts,
  waitNotifications,
  publishHttp,
  unique,
  WAIT_MS,
} from './harness.mjs';

describe('chat and notifications', () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  for (const transport of ['websocket', 'longpoll']) {
    it(`two pages chat over ${transport}`, async () => {
      const query = transport === 'longpoll' ? '?transport=longpoll' : '';
      const alice = await openDemo(browser, hub, { query, name: 'alice' });
      const bob = await openDemo(browser, hub, { query, name: 'bob' });
      await waitOpen(alice, transport);
      await waitOpen(bob, transport);

      const hello = unique('hello bob');
      await sendChat(alice, hello);
      const offset = await waitChat(bob, hello);
      assert.equal(await waitChat(alice, hello), offset, 'both pages see the same offset');
      const who = await bob.$eval('#chat-log .chat-msg:last-child .who', (e) => e.textContent);
      assert.equal(who, 'alice');

      const reply = unique('hi alice');
      await sendChat(bob, reply);
      assert.ok((await waitChat(alice, reply)) > offset, 'offsets increase');

      // Same order on both pages, each message once.
      const a = await chatTexts(alice);
      const b = await chatTexts(bob);
      assert.deepEqual(a, b);
      assert.deepEqual(
        a.filter((t) => t === hello || t === reply),
        [hello, reply],
      );

      // The status line shows the transport and the chat offset.
      assert.equal(await alice.textContent('#transport'), transport);
      await alice.waitForFunction(
        (o) => Number(document.querySelector('#offsets [data-channel="chat:lobby"]')?.dataset.offset) >= o,
        offset,
        { timeout: WAIT_MS },
      );
      assert.deepEqual([...alice.pageErrors, ...bob.pageErrors], []);
      await alice.context().close();
      await bob.context().close();
    });
  }

  for (const transport of ['websocket', 'longpoll']) {
    it(`a message published over HTTP appears in the notifications feed (${transport})`, async () => {
      const query = transport === 'longpoll' ? '?transport=longpoll' : '';
      const page = await openDemo(browser, hub, { query });
      await waitOpen(page, transport);
      const curl = await page.textContent('#curl');
      assert.equal(
        curl,
        `curl -X POST -H 'Content-Type: application/json' -d '{"title":"Hello"}' http://${hub.host}/api/publish/notifications`,
      );

      const title = unique('Deploy finished');
      const reply = await publishHttp(hub, 'notifications', { title, build: 42 });
      assert.ok(reply.enqueued >= 1, `enqueued for the page: ${JSON.stringify(reply)}`);
      await page.waitForFunction(
        (t) => [...document.querySelectorAll('#notif-list .notif .title')].some((e) => e.textContent === t),
        title,
        { timeout: WAIT_MS },
      );
      const body = await page.$eval('#notif-list .notif:first-child .body', (e) => e.textContent);
      assert.match(body, /"build": 42/);
      await page.context().close();
    });
  }

  it('the force long-poll toggle moves a live page to long-poll and back, resuming its channels', async () => {
    const page = await openDemo(browser, hub);
    await waitOpen(page, 'websocket');
    const first = unique('before toggle');
    await publishHttp(hub, 'notifications', { title: first });
    await waitNotifications(page, 1);

    await page.click('label.toggle');
    await waitOpen(page, 'longpoll');
    assert.match(page.url(), /transport=longpoll/);
    const second = unique('on long-poll');
    await publishHttp(hub, 'notifications', { title: second });
    assert.deepEqual(await waitNotifications(page, 2), [first, second]);

    // Chat still works through the switched client.
    const text = unique('chat over long-poll');
    await sendChat(page, text);
    await waitChat(page, text);

    await page.click('label.toggle');
    await waitOpen(page, 'websocket');
    const third = unique('back on websocket');
    await publishHttp(hub, 'notifications', { title: third });
    assert.deepEqual(await waitNotifications(page, 3), [first, second, third]);
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  it('switching rooms unsubscribes from the old room', async () => {
    const mover = await openDemo(browser, hub, { name: 'mover' });
    const stayer = await openDemo(browser, hub, { name: 'stayer' });
    await mover.fill('#room', 'side');
    await mover.click('#join');
    await mover.waitForFunction(() => document.querySelector('#chat-panel').dataset.joined === 'chat:side', null, {
      timeout: WAIT_MS,
    });
    await mover.waitForFunction(() => !('chat:lobby' in window.crier.positions()), null, { timeout: WAIT_MS });
    const inSide = unique('in side room');
    await sendChat(mover, inSide);
    await waitChat(mover, inSide);
    // A lobby message after the switch does not reach the mover; a side one does.
    const inLobby = unique('lobby only');
    await sendChat(stayer, inLobby);
    await waitChat(stayer, inLobby);
    const inSide2 = unique('side again');
    await sendChat(mover, inSide2);
    await waitChat(mover, inSide2);
    assert.ok(!(await chatTexts(mover)).includes(inLobby));
    assert.ok(!(await chatTexts(stayer)).includes(inSide));
    await mover.context().close();
    await stayer.context().close();
  });

  it('shows live hub figures from /api/stats', async () => {
    const page = await openDemo(browser, hub);
    await page.waitForFunction(() => document.querySelectorAll('#stats [data-stat]').length > 0, null, {
      timeout: WAIT_MS,
    });
    const names = await page.$$eval('#stats [data-stat]', (els) => els.map((e) => e.dataset.stat));
    assert.ok(names.length > 0);
    await page.context().close();
  });
});
