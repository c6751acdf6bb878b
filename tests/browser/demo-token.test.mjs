// The demo in token mode: pages connect with a token from `?token=`, and the chat shows the
// sender the hub verified and stamped (`from`), not the name typed into the page.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startHub, launchBrowser, openDemo, sendChat, waitChat, unique } from './harness.mjs';

const SECRET = 'demo-token-test-secret-of-32-bytes';

function sign(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
}

function token(sub, info) {
  return sign({
    sub,
    exp: Math.floor(Date.now() / 1000) + 600,
    subscribe: ['chat:*', 'notifications'],
    publish: ['chat:*'],
    ...(info ? { info } : {}),
  });
}

describe('the demo in token mode', () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args: ['--token-secret', SECRET] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  it('shows the verified sender, whatever name was typed', async () => {
    const ada = await openDemo(browser, hub, {
      query: `?token=${token('ada', { name: 'Ada Lovelace' })}`,
      name: 'mallory',
    });
    const bob = await openDemo(browser, hub, { query: `?token=${token('bob')}`, name: 'bob' });
    const text = unique('signed');
    await sendChat(ada, text);
    await waitChat(bob, text);
    const who = await bob.$eval('#chat-log .chat-msg:last-child .who', (e) => [e.textContent, e.title]);
    assert.deepEqual(who, ['Ada Lovelace', 'verified user ada']);
    assert.deepEqual([...ada.pageErrors, ...bob.pageErrors], []);
    await ada.context().close();
    await bob.context().close();
  });
});
