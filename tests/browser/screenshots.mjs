// Screenshots of the demo for docs/screenshots/: WebSocket and long-poll, laptop and phone.
// Run with `npm run screenshots` (builds the hub first). Not a test: node --test skips it.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  REPO_ROOT,
  startHub,
  launchBrowser,
  openDemo,
  waitOpen,
  sendChat,
  waitChat,
  waitNotifications,
  publishHttp,
} from './harness.mjs';

const OUT = path.join(REPO_ROOT, 'docs', 'screenshots');
const LAPTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };

async function main() {
  await mkdir(OUT, { recursive: true });
  const browser = await launchBrowser();
  let hub;
  try {
    // Two people talk and a backend publishes before each shot, so every shot has content.
    const shots = [
      { file: 'websocket-laptop.png', query: '', viewport: LAPTOP, transport: 'websocket' },
      { file: 'longpoll-laptop.png', query: '?transport=longpoll', viewport: LAPTOP, transport: 'longpoll' },
      { file: 'websocket-phone.png', query: '', viewport: PHONE, transport: 'websocket' },
      { file: 'longpoll-phone.png', query: '?transport=longpoll', viewport: PHONE, transport: 'longpoll' },
    ];
    for (const shot of shots) {
      // A fresh hub per shot, so each one starts at offset 1.
      hub = await startHub();
      const me = await openDemo(browser, hub, { query: shot.query, name: 'Ada', viewport: shot.viewport });
      const peer = await openDemo(browser, hub, { name: 'Grace' });
      await waitOpen(me, shot.transport);
      await sendChat(peer, 'Morning! Is the deploy out?');
      await waitChat(me, 'Morning! Is the deploy out?');
      await sendChat(me, 'Rolling now, watch the notifications feed');
      await waitChat(peer, 'Rolling now, watch the notifications feed');
      await publishHttp(hub, 'notifications', { title: 'Deploy started', service: 'api', version: '2.4.0' });
      await publishHttp(hub, 'notifications', { title: 'Deploy finished' });
      await waitNotifications(me, 2);
      await sendChat(peer, 'Shipped. Nice one!');
      await waitChat(me, 'Shipped. Nice one!');
      // Wait until the stats line (polled every 2 s) has caught up with the activity above.
      await me.waitForFunction(
        () => Number(document.querySelector('#stats [data-stat="published"]')?.dataset.value) >= 5,
        null,
        { timeout: 10000 },
      );
      await me.screenshot({ path: path.join(OUT, shot.file), fullPage: shot.viewport === PHONE });
      console.log('wrote', path.join('docs/screenshots', shot.file));
      await me.context().close();
      await peer.context().close();
      await hub.stop();
    }
  } finally {
    await browser.close();
    await hub?.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
