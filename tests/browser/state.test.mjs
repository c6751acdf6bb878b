// crier.js's connection state machine, under node with no browser and no hub: the transition
// table itself, then the lifecycle driven through a stand-in WebSocket that the test opens and
// closes by hand (and a stand-in fetch for the long-poll fallback). It needs no hub binary.

import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { CrierClient } from '../../static/crier.js';

const STATES = ['idle', 'connecting', 'open', 'reconnecting', 'closed'];

// The specification, written out here rather than read from crier.js, so that a change to the
// table there fails this test until the two agree again.
const ALLOWED = new Set([
  'idle→connecting',
  'idle→closed',
  'connecting→open',
  'connecting→closed',
  'open→reconnecting',
  'open→closed',
  'reconnecting→open',
  'reconnecting→closed',
  'closed→connecting',
  'closed→reconnecting',
]);

/** A WebSocket the test drives: `serverOpen()`, `serverClose(code)`; records what is sent. */
class FakeWebSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closedWith = null;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this.onclose = null;
    FakeWebSocket.instances.push(this);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
  }

  serverOpen() {
    this.onopen?.();
  }

  serverClose(code, reason = '') {
    this.onclose?.({ code, reason });
  }
}

/** Resolves once `predicate()` holds; rejects after `ms` (every wait is bounded). */
async function waitFor(predicate, what, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function recordStates(client) {
  const states = [];
  client.on('state', ({ state }) => states.push(state));
  return states;
}

describe('crier.js transition table', () => {
  for (const from of STATES) {
    for (const to of STATES) {
      const allowed = ALLOWED.has(`${from}→${to}`);
      it(`${from} → ${to} is ${allowed ? 'allowed' : 'refused'}`, () => {
        const client = new CrierClient();
        client.state = from; // placed there directly: only _transition() is under test
        const events = [];
        client.on('state', (payload) => events.push(payload));
        if (allowed) {
          client._transition(to);
          assert.equal(client.state, to);
          assert.deepEqual(events, [{ state: to, transport: null, attempt: 0, reconnects: 0 }]);
        } else {
          assert.throws(() => client._transition(to), /no transition/);
          assert.equal(client.state, from, 'a refused move leaves the state as it was');
          assert.deepEqual(events, [], 'a refused move emits nothing');
        }
      });
    }
  }
});

describe('crier.js lifecycle (stand-in WebSocket)', () => {
  let client;

  beforeEach(() => {
    FakeWebSocket.instances = [];
    globalThis.WebSocket = FakeWebSocket;
    // Zero backoff: a retry is one timer tick away, so nothing here waits on the clock.
    client = new CrierClient({ transport: 'websocket', backoff: { initialMs: 0, maxMs: 0 } });
  });

  afterEach(() => {
    client.close();
    delete globalThis.WebSocket;
  });

  const socket = (n) => FakeWebSocket.instances[n];

  it('connects, reconnects after a lost connection, closes on a fatal code, resumes on reconnect()', async () => {
    const states = recordStates(client);
    client.connect();
    assert.equal(client.state, 'connecting');
    assert.equal(client.attempt, 1, 'the attempt is counted before the state event');
    socket(0).serverOpen();
    await waitFor(() => client.state === 'open', 'open');

    socket(0).serverClose(1001, 'shutdown'); // the hub went away: retried
    assert.equal(client.state, 'reconnecting');
    await waitFor(() => FakeWebSocket.instances.length === 2, 'a second socket');
    socket(1).serverOpen();
    await waitFor(() => client.state === 'open', 'open again');
    assert.equal(client.reconnects, 1);

    socket(1).serverClose(1009, 'message_too_large'); // fatal: not retried
    assert.equal(client.state, 'closed');
    assert.equal(client.lastDisconnect.reason, 'message_too_large');
    client.reconnect();
    assert.equal(client.state, 'reconnecting', 'a client that has opened before reconnects');
    socket(2).serverOpen();
    await waitFor(() => client.state === 'open', 'open after reconnect()');

    client.close();
    assert.deepEqual(socket(2).closedWith, { code: 1000, reason: 'client_closed' });
    assert.deepEqual(states, [
      'connecting',
      'open',
      'reconnecting',
      'open',
      'closed',
      'reconnecting',
      'open',
      'closed',
    ]);
  });

  it('a connection opened after close() is closed, not used', async () => {
    const states = recordStates(client);
    client.connect();
    client.close();
    socket(0).serverOpen();
    await waitFor(() => socket(0).closedWith !== null, 'the late socket closed');
    assert.equal(client.state, 'closed');
    assert.equal(client.transport, null);
    assert.deepEqual(states, ['connecting', 'closed']);
  });

  it('after close() and connect(), only the new attempt is used', async () => {
    client.connect();
    client.close();
    client.connect();
    socket(0).serverOpen(); // the first attempt finishes late
    await waitFor(() => socket(0).closedWith !== null, 'the stale socket closed');
    assert.equal(client.state, 'connecting');
    socket(1).serverOpen();
    await waitFor(() => client.state === 'open', 'open');
    assert.equal(socket(1).closedWith, null);
  });

  it("'auto' falls back to long-poll when the socket fails, stays there, and tries WebSocket after setTransport()", async () => {
    const realFetch = globalThis.fetch;
    const paths = [];
    // The hub's long-poll endpoints, as far as opening a session goes; a poll hangs until aborted.
    globalThis.fetch = (url, init = {}) => {
      const { pathname } = new URL(url);
      paths.push(pathname);
      if (pathname === '/lp/poll') {
        return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new Error('aborted'))));
      }
      const body = pathname === '/lp/connect' ? { session: `s${paths.length}`, hold_ms: 25000 } : {};
      return Promise.resolve({ ok: true, status: 200, json: async () => body });
    };
    try {
      client = new CrierClient({ transport: 'auto', backoff: { initialMs: 0, maxMs: 0 } });
      const fallbacks = [];
      client.on('fallback', (event) => fallbacks.push(event));
      client.connect();
      socket(0).serverClose(1006); // failed before it opened
      await waitFor(() => client.state === 'open', 'open');
      assert.equal(client.transport, 'longpoll');
      assert.equal(fallbacks.length, 1);

      client._dropConnection();
      await waitFor(() => client.state === 'open' && client.reconnects === 1, 'open again');
      assert.equal(client.transport, 'longpoll');
      assert.equal(FakeWebSocket.instances.length, 1, 'no WebSocket tried once long-poll worked instead');

      client.setTransport('auto');
      await waitFor(() => FakeWebSocket.instances.length === 2, 'a WebSocket tried again');
      socket(1).serverOpen();
      await waitFor(() => client.state === 'open' && client.transport === 'websocket', 'open on WebSocket');
      client.close();
      await waitFor(() => paths.filter((p) => p === '/lp/close').length === 2, 'both sessions closed');
    } finally {
      globalThis.fetch = realFetch;
    }
  });

  it('waits at least what the hub asks, with jitter: 10 s after a rate_limited close, Retry-After after a refused connect', async () => {
    const delays = [];
    const record = (c) => c.on('reconnecting', ({ delayMs, error }) => delays.push({ delayMs, code: error?.code }));
    record(client);
    client.connect();
    socket(0).serverOpen();
    await waitFor(() => client.state === 'open', 'open');
    socket(0).serverClose(4004, 'rate_limited');
    assert.equal(client.state, 'reconnecting');
    assert.equal(client.lastDisconnect.reason, 'rate_limited');
    assert.ok(delays[0].delayMs >= 10000 && delays[0].delayMs <= 15000, `waits ${delays[0].delayMs} ms`);
    client.close();

    const realFetch = globalThis.fetch;
    // /lp/connect refused as the hub does past --max-connections-per-ip.
    globalThis.fetch = () =>
      Promise.resolve({
        ok: false,
        status: 503,
        headers: new Headers({ 'retry-after': '2' }),
        json: async () => ({ error: { code: 'too_many_connections', message: 'your address holds 2000' } }),
      });
    try {
      client = new CrierClient({ transport: 'longpoll', backoff: { initialMs: 0, maxMs: 0 } });
      record(client);
      client.connect();
      await waitFor(() => delays.length === 2, 'a refused connect');
      assert.equal(delays[1].code, 'too_many_connections');
      assert.ok(delays[1].delayMs >= 2000 && delays[1].delayMs <= 3000, `waits ${delays[1].delayMs} ms`);
    } finally {
      globalThis.fetch = realFetch;
    }
  });

  it('a dropped connection with stayDown waits for reconnect()', async () => {
    client.connect();
    socket(0).serverOpen();
    await waitFor(() => client.state === 'open', 'open');
    client._dropConnection({ stayDown: true });
    assert.equal(client.state, 'reconnecting');
    await new Promise((resolve) => setTimeout(resolve, 20)); // room for a retry that must not come
    assert.equal(FakeWebSocket.instances.length, 1, 'no attempt while held down');
    client.reconnect();
    assert.equal(FakeWebSocket.instances.length, 2);
    socket(1).serverOpen();
    await waitFor(() => client.state === 'open', 'open after reconnect()');
  });
});
