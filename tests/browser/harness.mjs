// Shared helpers for the browser tests: start the real hub binary, launch chromium, and wait
// on page state. Every wait is bounded; nothing sleeps a fixed time.
//
// The hub binary: $CRIER_BIN, else ${CARGO_TARGET_DIR:-target}/debug/crier. `npm run
// test:browser` runs `cargo build --bin crier` first; running `node --test tests/browser/`
// directly expects it built (set CRIER_BUILD=1 to have the harness build it).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const STATIC_DIR = path.join(REPO_ROOT, 'static');
const TARGET_DIR = path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR || 'target');
export const HUB_BIN = process.env.CRIER_BIN || path.join(TARGET_DIR, 'debug', 'crier');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** Generous bound for any single wait; a healthy run needs a fraction of it. */
export const WAIT_MS = 15000;

const LISTENING_RE = /listening on http:\/\/([0-9.:]+)/;
// eslint-disable-next-line no-control-regex
const ANSI_RE = /\x1b\[[0-9;]*m/g;

let built = false;
function ensureHubBinary() {
  if (process.env.CRIER_BUILD === '1' && !built) {
    const r = spawnSync('cargo', ['build', '--bin', 'crier'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('`cargo build --bin crier` failed');
    built = true;
  }
  if (!existsSync(HUB_BIN)) {
    throw new Error(
      `hub binary not found at ${HUB_BIN}. Build it first: \`cargo build --bin crier\` ` +
        '(or run `npm run test:browser`, which does), or point CRIER_BIN at it.',
    );
  }
}

/**
 * Start the hub on 127.0.0.1 (port 0 unless given) serving static/, and wait until it logs
 * `listening on http://ADDR`. Resolves with `{ url, host, port, args, stop(), logs() }`.
 */
export async function startHub({ args = [], port = 0 } = {}) {
  ensureHubBinary();
  const fullArgs = ['--bind', `127.0.0.1:${port}`, '--static-dir', STATIC_DIR, ...args];
  const child = spawn(HUB_BIN, fullArgs, {
    cwd: REPO_ROOT,
    env: { RUST_LOG: 'info', ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`hub did not log "listening on" within ${WAIT_MS} ms:\n${output}`));
    }, WAIT_MS);
    const onData = (chunk) => {
      output += chunk.toString().replace(ANSI_RE, '');
      const m = output.match(LISTENING_RE);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    // tracing writes to stderr; read stdout too in case that changes.
    child.stderr.on('data', onData);
    child.stdout.on('data', onData);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`hub exited (code ${code}, signal ${signal}) before listening:\n${output}`));
    });
  });

  const hubPort = Number(addr.split(':').pop());
  return {
    url: `http://${addr}`,
    host: addr,
    port: hubPort,
    args,
    logs: () => output,
    /** SIGTERM (graceful: WS 1001, long-poll `disconnect`), or SIGKILL for a crash. */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Launch headless chromium with the flags this environment needs. */
export function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`chromium not found at ${CHROMIUM}: apt-get update && apt-get install -y chromium`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Open the demo in a fresh browser context (own storage) and wait until the client is open
 * with the default room and notifications subscribed. `query` e.g. '?transport=longpoll'.
 */
export async function openDemo(browser, hub, { query = '', name, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport || { width: 1280, height: 860 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err));
  page.pageErrors = pageErrors;
  await page.goto(`${hub.url}/${query}`);
  if (name) {
    await page.fill('#name', name);
  }
  await waitOpen(page);
  await page.waitForFunction(
    () => window.crier.positions()['chat:lobby']?.epoch && window.crier.positions().notifications?.epoch,
    null,
    { timeout: WAIT_MS },
  );
  return page;
}

/** Wait for the page's client to be open (optionally on a given transport). */
export async function waitOpen(page, transport) {
  await page.waitForFunction(
    (t) => document.body.dataset.state === 'open' && (!t || document.body.dataset.transport === t),
    transport ?? null,
    { timeout: WAIT_MS },
  );
}

/** Type a chat message and press Send. */
export async function sendChat(page, text) {
  await page.fill('#chat-input', text);
  await page.click('#chat-send');
}

/** Wait until the chat log holds a message with exactly this text; returns its offset. */
export async function waitChat(page, text) {
  const handle = await page.waitForFunction(
    (t) =>
      [...document.querySelectorAll('#chat-log .chat-msg')].find(
        (li) => li.querySelector('.msg-text').textContent === t,
      )?.dataset.offset,
    text,
    { timeout: WAIT_MS },
  );
  return Number(await handle.jsonValue());
}

/** The chat texts shown, in order. */
export function chatTexts(page) {
  return page.$$eval('#chat-log .chat-msg .msg-text', (els) => els.map((e) => e.textContent));
}

/** The notification titles shown, oldest first. */
export async function notificationTitles(page) {
  const titles = await page.$$eval('#notif-list .notif .title', (els) => els.map((e) => e.textContent));
  return titles.reverse();
}

/** Wait until the notifications feed shows `count` items; returns their titles, oldest first. */
export async function waitNotifications(page, count) {
  await page.waitForFunction((n) => document.querySelectorAll('#notif-list .notif').length >= n, count, {
    timeout: WAIT_MS,
  });
  return notificationTitles(page);
}

/** Wait for a notice (kind: 'missed' | 'error' | 'warn') whose text matches `re`; returns the text. */
export async function waitNotice(page, kind, re) {
  const handle = await page.waitForFunction(
    ([k, src]) => {
      const rx = new RegExp(src);
      return [...document.querySelectorAll(`#notices .notice[data-kind="${k}"]`)]
        .map((li) => li.textContent)
        .find((t) => rx.test(t));
    },
    [kind, re.source],
    { timeout: WAIT_MS },
  );
  return handle.jsonValue();
}

/** Publish over the hub's HTTP API from node (a "backend"). */
export async function publishHttp(hub, channel, data) {
  const res = await fetch(`${hub.url}/api/publish/${encodeURIComponent(channel)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(data),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`publish ${channel}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Unique text per call, so tests never match a message from an earlier test. */
let counter = 0;
export function unique(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 7)}`;
}
