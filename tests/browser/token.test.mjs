// Connection tokens in crier.js: `getToken()` at connect, `refresh_token` answered with a
// `refresh` while messages flow (nothing lost, no reconnect), and an expired token (4003 on
// WebSocket, the `token_expired` frame on long-poll) followed by a reconnect with a fresh
// token that resumes without loss. The test signs HS256 tokens itself, as a backend would.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startHub, launchBrowser, publishHttp, WAIT_MS } from './harness.mjs';

const SECRET = 'browser-test-secret-of-32-bytes-long';

function sign(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
}

function token(ttlSecs) {
  return sign({ sub: 'ada', exp: Math.floor(Date.now() / 1000) + ttlSecs, subscribe: ['feed'] });
}

/** A page on the hub's origin with a CrierClient in `window.client`, delivering into `window.got`. */
async function openClient(browser, hub, transport, tokens) {
  const page = await browser.newPage();
  page.pageErrors = [];
  page.on('pageerror', (err) => page.pageErrors.push(err));
  // Each call to getToken() takes the next lifetime from `tokens` (the last one repeats); a
  // lifetime of null makes getToken() fail (the app's backend is down).
  let calls = 0;
  await page.exposeFunction('mintToken', () => {
    const ttl = tokens[Math.min(calls, tokens.length - 1)];
    calls += 1;
    return ttl === null ? null : token(ttl);
  });
  await page.goto(`${hub.url}/crier.js`);
  await page.evaluate(async (transport) => {
    const { CrierClient } = await import('/crier.js');
    window.got = [];
    window.events = [];
    const client = new CrierClient({
      transport,
      backoff: { initialMs: 50, maxMs: 200 },
      getToken: async () => {
        const t = await window.mintToken();
        if (!t) throw new Error('backend unavailable');
        return t;
      },
    });
    client.on('refreshed', (f) => window.events.push(['refreshed', f.exp]));
    client.on('disconnect', (d) => window.events.push(['disconnect', d.code, d.reason]));
    client.subscribe('feed', (data) => window.got.push(data));
    client.connect();
    window.client = client;
  }, transport);
  await page.waitForFunction(() => window.client.state === 'open', null, { timeout: WAIT_MS });
  return page;
}

/** Publishes 1, 2, 3… (each once the page has the one before) until `done(page)` holds. */
async function flowUntil(hub, page, done) {
  let n = 0;
  const deadline = Date.now() + WAIT_MS;
  while (!(await page.evaluate(done))) {
    assert.ok(
      Date.now() < deadline,
      `timed out while messages flowed: ${JSON.stringify(await page.evaluate(() => window.events))}`,
    );
    n += 1;
    await publishHttp(hub, 'feed', n);
    await page
      .waitForFunction((n) => window.got.includes(n), n, { timeout: WAIT_MS })
      .catch(async (err) => {
        const seen = await page.evaluate(() => [window.client.state, window.got, window.events]);
        throw new Error(`message ${n} did not arrive: ${JSON.stringify(seen)}: ${err.message}`);
      });
  }
  return n;
}

describe('connection tokens (getToken)', () => {
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args: ['--token-secret', SECRET, '--token-leeway', '0s'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  for (const transport of ['websocket', 'longpoll']) {
    it(`refreshes before expiry while messages flow (${transport})`, async () => {
      const page = await openClient(browser, hub, transport, [3, 60]);
      // Messages flow until the refresh happened and the first token's exp (3 s) is well past.
      const expiredAt = Date.now() + 4000;
      const n = await flowUntil(
        hub,
        page,
        `window.events.some((e) => e[0] === 'refreshed') && Date.now() > ${expiredAt}`,
      );
      const got = await page.evaluate(() => window.got);
      assert.deepEqual(
        got,
        Array.from({ length: n }, (_, i) => i + 1),
        'no message lost or repeated',
      );
      assert.equal(await page.evaluate(() => window.client.reconnects), 0);
      assert.deepEqual(await page.evaluate(() => window.events.filter((e) => e[0] === 'disconnect')), []);
      assert.deepEqual(page.pageErrors, []);
      await page.close();
    });

    it(`reconnects with a fresh token after expiry and resumes (${transport})`, async () => {
      // First token: 2 s; the refresh fails (backend down); the reconnect gets a 60 s token.
      const page = await openClient(browser, hub, transport, [2, null, 60]);
      const n = await flowUntil(hub, page, () => window.client.reconnects > 0);
      const got = await page.evaluate(() => window.got);
      assert.deepEqual(
        got,
        Array.from({ length: n }, (_, i) => i + 1),
        'no message lost or repeated',
      );
      const disconnects = await page.evaluate(() => window.events.filter((e) => e[0] === 'disconnect'));
      assert.deepEqual(disconnects, [['disconnect', 4003, 'token_expired']]);
      assert.deepEqual(page.pageErrors, []);
      await page.close();
    });
  }
});
