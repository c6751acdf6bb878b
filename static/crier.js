// crier.js — a small, dependency-free browser client for the crier hub.
//
// The wire contract is docs/PROTOCOL.md; usage is documented in docs/CLIENT.md.
// This file is meant to be read and copied: one ES module, no build step.
//
//   import { CrierClient } from './crier.js';
//   const client = new CrierClient();                       // same origin as the page
//   client.on('state', ({ state, transport }) => console.log(state, transport));
//   await client.subscribe('news', (data, msg) => console.log(msg.offset, data));
//   client.connect();
//   await client.publish('chat:lobby', { text: 'hi' });    // resolves with the `published` frame
//
// What it does for you:
// - WebSocket first (`/ws`); long-poll (`/lp/*`) when WebSocket is missing or fails to open,
//   or always with `{ transport: 'longpoll' }`.
// - Requests (`subscribe`, `unsubscribe`, `publish`, `ping`) carry an `id`; the promise resolves
//   with the reply frame that echoes it, or rejects with a `CrierError` carrying the `code`.
// - Reconnects with jittered exponential backoff and resumes every channel from the last
//   position it delivered (`since: {epoch, offset}`), so nothing within history is missed.
//   When history cannot cover the gap the hub says so and you get a `missed` event.
// - With a `getToken()` option (hubs with tokens): asks it for a connection token before every
//   connection attempt, and again when the hub says the token is about to expire
//   (`refresh_token` → `refresh`). A token-related refusal (401, close 4003) is retried with
//   the usual backoff, with a fresh token.
// - Drops duplicates defensively (an offset at or below the last one delivered, same epoch).

/** WebSocket close codes from docs/PROTOCOL.md, with the reason text the hub sends. */
export const CLOSE_REASONS = Object.freeze({
  1000: 'client_closed',
  1001: 'shutdown',
  1002: 'protocol_error',
  1006: 'connection_lost', // browser-side: the socket died without a close frame
  1007: 'invalid_utf8',
  1009: 'message_too_large',
  1011: 'internal_error',
  4000: 'slow',
  4001: 'idle_timeout',
  4002: 'write_timeout',
  4003: 'token_expired',
  4004: 'rate_limited',
  4005: 'disconnected_by_backend',
  4006: 'reconnect_by_backend',
});

// A client closed as `rate_limited` (4004) reconnects no sooner than this (docs/PROTOCOL.md,
// "Rate limits"): by then every per-connection limit has refilled.
const RATE_LIMITED_CLOSE = 4004;
const RATE_LIMITED_WAIT_MS = 10000;

// Closes the protocol marks "reconnect? no": the hub rejected what *this* client sent, so an
// automatic retry would most likely fail the same way; or the backend ended the user's
// connections (4005). The app decides (see `reconnect()`).
const FATAL_CLOSE_CODES = new Set([1002, 1007, 1009, 4005]);

const DEFAULTS = {
  url: undefined, // base URL of the hub, e.g. 'https://hub.example.com'; default: the page's origin
  transport: 'auto', // 'auto' | 'websocket' | 'longpoll'
  reconnect: true, // reconnect automatically after a connection is lost
  backoff: { initialMs: 500, maxMs: 15000, factor: 2 },
  wsOpenTimeoutMs: 5000, // a socket that has not opened by then counts as failed (→ long-poll)
  requestTimeoutMs: 15000, // publish/unsubscribe/ping without a reply by then reject with `timeout`
  getToken: undefined, // async () => token: called before each connection and on `refresh_token`
};

// The connection lifecycle. `state` is the only record of where the client stands, and every
// change goes through `_transition()`, which refuses a move this table does not list:
//
//   idle ─connect()─▶ connecting ─opened─▶ open ─lost─▶ reconnecting ─opened─▶ open
//   open ─lost, not to be retried (fatal close code, `reconnect: false`)─▶ closed
//   any other state ─close()─▶ closed ─connect()─▶ connecting, or reconnecting once it has opened
//
// A failed attempt stays where it is (connecting or reconnecting) and waits for the next one.
// Whether an attempt is in flight (`_opening`) or waiting out its backoff (`_retryTimer`) is not
// a state: the API does not tell them apart, and those fields hold what close() must cancel.
const TRANSITIONS = Object.freeze({
  idle: Object.freeze(['connecting', 'closed']),
  connecting: Object.freeze(['open', 'closed']),
  open: Object.freeze(['reconnecting', 'closed']),
  reconnecting: Object.freeze(['open', 'closed']),
  closed: Object.freeze(['connecting', 'reconnecting']),
});

/** An error from the hub (`error` frame, HTTP error, close code) or from the client itself. */
export class CrierError extends Error {
  /**
   * @param {string} code  a code from docs/PROTOCOL.md (`publish_forbidden`, `message_too_large`…)
   *                       or one of the client's own: `timeout`, `connection_lost`, `closed`,
   *                       `network_error`, `ws_open_failed`.
   * @param {string} [message]
   * @param {object} [details] extra fields (`status`, `closeCode`, `frame`, `limit`,
   *                           `retryAfterMs` from an HTTP `Retry-After`…)
   */
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = 'CrierError';
    this.code = code;
    Object.assign(this, details);
  }
}

export class CrierClient {
  /** @param {Partial<typeof DEFAULTS>} [options] */
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...options.backoff } };
    const origin = typeof location !== 'undefined' ? location.origin : 'http://127.0.0.1:8080';
    this.baseUrl = (this.options.url || origin).replace(/\/+$/, '');

    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'idle';
    /** 'websocket' | 'longpoll' | null — the transport of the current connection */
    this.transport = null;
    /** attempts made since the last successful open (0 while open) */
    this.attempt = 0;
    /** how many times a lost connection was re-established */
    this.reconnects = 0;
    /** why the last connection ended: `{ reason, code, message, reconnect, transport }` */
    this.lastDisconnect = null;

    this._listeners = new Map(); // event name → Set of functions
    this._subs = new Map(); // channel → subscription state (see subscribe())
    this._pending = new Map(); // request id → { frame, resolve, reject, timer, sent }
    this._outbox = []; // requests made while not connected; sent in order on open
    this._nextId = 1;
    this._conn = null; // the live transport object; only while `state` is 'open'
    // Token of the attempt in flight. close() clears it, so an attempt that finishes after
    // close() (or after close() and connect() again) closes what it opened instead of using it.
    this._opening = null;
    this._retryTimer = null; // the backoff wait before the next attempt
    this._opens = 0; // connections opened so far; after the first, every approach is 'reconnecting'
    // What `auto` opens: 'longpoll' once it worked where WebSocket did not (a proxy that blocks
    // upgrades keeps blocking them), until setTransport() starts afresh.
    this._autoTransport = 'websocket';
    this._token = null; // the connection token in use (only with `getToken`)
    this._onOnline = () => {
      if (this.state === 'reconnecting') this.reconnect();
    };
  }

  // ---------------------------------------------------------------------------------------
  // Events

  /**
   * Listen to an event; returns a function that removes the listener.
   *
   * - `state`        `{ state, transport, attempt, reconnects }` on every change
   * - `open`         `{ transport, reconnected }`
   * - `disconnect`   `{ reason, code, message, reconnect, transport }` when a connection ends
   * - `reconnecting` `{ attempt, delayMs, error? }` before each retry
   * - `fallback`     `{ from: 'websocket', to: 'longpoll', error }`
   * - `missed`       the hub's `missed` frame: `{ channel, reason, epoch, since, first_available }`
   * - `message`      every message frame delivered to a subscriber `{ channel, epoch, offset, data }`
   * - `subscribed`   the hub's `subscribed` frame (also after each resume)
   * - `error`        a `CrierError` that belongs to no request (unsolicited `error` frame…)
   * - `refreshed`      the hub's `refreshed` frame `{ exp }` after a token refresh
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  _emit(event, payload) {
    for (const fn of this._listeners.get(event) ?? []) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`crier: "${event}" listener threw`, err);
      }
    }
  }

  /** The one way `state` changes: a move TRANSITIONS does not list is a bug, and throws. */
  _transition(next) {
    if (!TRANSITIONS[this.state]?.includes(next)) {
      throw new Error(`crier: no transition from ${this.state} to ${next}`);
    }
    this.state = next;
    this._emit('state', {
      state: next,
      transport: this.transport,
      attempt: this.attempt,
      reconnects: this.reconnects,
    });
  }

  // ---------------------------------------------------------------------------------------
  // Public API

  /** Start connecting (idempotent). Subscriptions made before or after are all kept. */
  connect() {
    if (this.state !== 'idle' && this.state !== 'closed') return;
    if (typeof window !== 'undefined') window.addEventListener('online', this._onOnline);
    this._attempt(this._opens > 0 ? 'reconnecting' : 'connecting');
  }

  /** Reconnect now: skips a pending backoff delay, or restarts after a fatal close. */
  reconnect() {
    if (this.state === 'idle' || this.state === 'closed') return this.connect();
    // Only a client waiting to reconnect has a wait to skip; an attempt in flight is left alone.
    if (this.state !== 'reconnecting' || this._opening) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._attempt();
  }

  /**
   * Switch transport ('auto' | 'websocket' | 'longpoll'). A live connection is closed and a
   * new one opened at once; every channel resumes from its position, so nothing is lost.
   */
  setTransport(mode) {
    this.options.transport = mode;
    this._autoTransport = 'websocket';
    const conn = this._conn;
    if (!conn) return this.reconnect();
    this._connectionLost(conn, { reason: 'transport_changed', code: null, reconnect: true }, { delayMs: 0 });
    conn.close();
  }

  /**
   * Subscribe `handler(data, message)` to `channel`. Resolves with the `subscribed` frame
   * (rejects with a CrierError, e.g. `invalid_channel`). Works before `connect()` and while
   * disconnected: the subscribe is sent when the connection opens, and again — with `since`
   * set to the last position delivered — after every reconnect.
   *
   * options.since: `{ epoch?, offset }` to start from a known position
   *                (`{ offset: 0 }` asks for everything history still holds).
   * options.onMissed: called with the `missed` frame for this channel.
   */
  subscribe(channel, handler, options = {}) {
    let sub = this._subs.get(channel);
    if (sub) {
      if (handler) sub.handlers.add(handler);
      if (options.onMissed) sub.missedHandlers.add(options.onMissed);
      return sub.lastSubscribed ? Promise.resolve(sub.lastSubscribed) : sub.ready;
    }
    let resolveReady;
    let rejectReady;
    const ready = new Promise((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    ready.catch(() => {}); // an unobserved rejection is reported through `error` instead
    sub = {
      channel,
      handlers: new Set(handler ? [handler] : []),
      missedHandlers: new Set(options.onMissed ? [options.onMissed] : []),
      // Position of the last message delivered. `epoch: null` with an offset means
      // "that offset in whatever the current epoch is" (PROTOCOL.md allows omitting it).
      epoch: options.since?.epoch ?? null,
      offset: options.since ? options.since.offset : null,
      lastSubscribed: null,
      requestId: null,
      // Presence channels: ask for `presence_diff` frames, and re-read the members after every
      // (re)subscribe, since joins and leaves are not replayed (PROTOCOL.md "Presence").
      joinLeave: Boolean(options.joinLeave),
      ready, // settles once: with the first `subscribed` frame, or the error that dropped it
      resolveReady,
      rejectReady,
    };
    this._subs.set(channel, sub);
    if (this.state === 'open') this._sendSubscribe(sub);
    return sub.ready;
  }

  /**
   * Stop delivering `channel` to `handler` (or to every handler when omitted). When no handler
   * is left the hub is told; resolves with the `unsubscribed` frame (or `null` if offline).
   */
  unsubscribe(channel, handler) {
    const sub = this._subs.get(channel);
    if (!sub) return Promise.resolve(null);
    if (handler) {
      sub.handlers.delete(handler);
      if (sub.handlers.size > 0) return Promise.resolve(null);
    }
    this._subs.delete(channel); // from now on its frames are ignored
    sub.rejectReady(new CrierError('unsubscribed', `unsubscribed from ${channel}`));
    if (this.state !== 'open') return Promise.resolve(null);
    return this._request({ type: 'unsubscribe', channel });
  }

  /**
   * Publish `data` (any JSON value) on `channel`. Resolves with the `published` frame
   * (`{ channel, epoch, offset, enqueued }`). The hub only lets clients publish on channels
   * matching `--client-publish` (default `chat:*`), otherwise this rejects with
   * `publish_forbidden`. While disconnected the publish waits and is sent on reconnect; one that
   * was already sent when the connection died rejects with `connection_lost` (it may or may not
   * have been published — the client does not resend, to avoid duplicates).
   */
  publish(channel, data) {
    return this._request({ type: 'publish', channel, data });
  }

  /**
   * One page of `channel`'s members (a channel that keeps presence): resolves with the
   * `presence` frame (`{ channel, members, next }`); pass `next` as `cursor` for the next page.
   */
  presence(channel, cursor) {
    const frame = { type: 'presence', channel };
    if (cursor != null) frame.cursor = cursor;
    return this._request(frame);
  }

  /** All of `channel`'s members, every page: resolves with an array of members. */
  async presenceAll(channel) {
    const members = [];
    let cursor = null;
    for (let page = 0; page < 10_000; page += 1) {
      const reply = await this.presence(channel, cursor);
      members.push(...reply.members);
      if (reply.next == null) return members;
      cursor = reply.next;
    }
    return members;
  }

  /** How many clients and distinct users `channel` has: resolves with `{ clients, users }`. */
  async presenceStats(channel) {
    const { clients, users } = await this._request({ type: 'presence_stats', channel });
    return { clients, users };
  }

  /** Round trip to the hub; resolves with the `pong` frame. */
  ping() {
    return this._request({ type: 'ping' });
  }

  /** Last position delivered per channel: `{ [channel]: { epoch, offset } }`. */
  positions() {
    const out = {};
    for (const [channel, sub] of this._subs) out[channel] = { epoch: sub.epoch, offset: sub.offset };
    return out;
  }

  /**
   * Close cleanly: the WebSocket with 1000, the long-poll session with `/lp/close`. Pending
   * requests reject with `closed`. Subscriptions are kept: `connect()` later resumes them.
   */
  close() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._opening = null;
    if (typeof window !== 'undefined') window.removeEventListener('online', this._onOnline);
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close();
    this._failRequests(new CrierError('closed', 'client closed'), true);
    this.transport = null;
    this.attempt = 0;
    if (this.state !== 'closed') this._transition('closed');
  }

  // ---------------------------------------------------------------------------------------
  // Test hooks (not part of the API; used by tests/browser/)

  /**
   * Kill the connection as a network failure would (no clean close from our side is awaited).
   * With `{ stayDown: true }` no reconnect is attempted until `reconnect()` is called, which
   * lets a test publish "while the client is away" and then check the resume.
   */
  _dropConnection({ stayDown = false } = {}) {
    const conn = this._conn;
    if (!conn) return;
    this._connectionLost(conn, { reason: 'dropped', code: null, reconnect: true }, { hold: stayDown });
    conn.drop();
  }

  // ---------------------------------------------------------------------------------------
  // Connection lifecycle

  /**
   * One connection attempt. `enter` is the state a client in idle or closed moves to first;
   * a client already connecting or reconnecting stays where it is.
   */
  async _attempt(enter) {
    const opening = {};
    this._opening = opening;
    this.attempt += 1;
    if (enter) this._transition(enter);
    if (this._opening !== opening) return; // a `state` listener called close()
    let conn;
    try {
      conn = await this._openTransport();
    } catch (error) {
      if (this._opening !== opening) return; // close() came first
      this._opening = null;
      this._scheduleRetry(error);
      return;
    }
    if (this._opening !== opening) {
      conn.close(); // close() came first (and maybe a new connect(): its own attempt goes on)
      return;
    }
    this._opening = null;
    this._conn = conn;
    this.transport = conn.name;
    const reconnected = this._opens > 0;
    if (reconnected) this.reconnects += 1;
    this._opens += 1;
    this.attempt = 0;
    this._transition('open');
    this._emit('open', { transport: conn.name, reconnected });
    if (this._conn !== conn) return; // a `state` or `open` listener closed it already

    // Resubscribe first (each with its resume position), then whatever was queued offline:
    // the hub handles one client's frames in order, so a queued publish on a channel we are
    // resuming comes after the catch-up.
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    const outbox = this._outbox.splice(0);
    for (const entry of outbox) this._transmit(entry);
  }

  /** Open a transport per `options.transport`, falling back from WebSocket to long-poll. */
  async _openTransport() {
    if (this.options.getToken) {
      // A fresh token for every attempt: the one that failed (401, 4003) may be what failed.
      try {
        this._token = await this.options.getToken();
      } catch (err) {
        throw new CrierError('token_unavailable', `getToken() failed: ${err?.message || err}`);
      }
    }
    const mode = this.options.transport;
    const hasWs = typeof WebSocket !== 'undefined';
    if (mode === 'longpoll' || (mode === 'auto' && (!hasWs || this._autoTransport === 'longpoll'))) {
      return this._openLongPoll();
    }
    if (mode === 'websocket') return this._openWebSocket();
    try {
      return await this._openWebSocket();
    } catch (wsError) {
      // The socket did not open: either WebSocket is blocked on the way (proxy, firewall) or
      // the hub is down. Long-poll tells the two apart: if it works, stay on it.
      const conn = await this._openLongPoll();
      this._autoTransport = 'longpoll';
      this._emit('fallback', { from: 'websocket', to: 'longpoll', error: wsError });
      return conn;
    }
  }

  _openWebSocket() {
    // Browsers cannot set headers on a WebSocket: the token travels in the query.
    const query = this._token ? `?token=${encodeURIComponent(this._token)}` : '';
    const url = this.baseUrl.replace(/^http/, 'ws') + '/ws' + query;
    return WebSocketConnection.open(url, this._sinkFor(), this.options.wsOpenTimeoutMs);
  }

  _openLongPoll() {
    return LongPollConnection.open(this.baseUrl, this._sinkFor(), this._token);
  }

  /** The hub's `refresh_token` notice: fetch a new token and hand it over (`refresh`). */
  async _refreshToken(conn) {
    if (!this.options.getToken) return;
    let token;
    try {
      token = await this.options.getToken();
    } catch (err) {
      this._emit('error', new CrierError('token_unavailable', `getToken() failed: ${err?.message || err}`));
      return; // the hub closes with 4003 at expiry; the reconnect asks again
    }
    if (conn !== this._conn) return;
    try {
      const reply = await this._request({ type: 'refresh', token });
      this._token = token;
      if (conn.token !== undefined) conn.token = token; // long-poll requests carry it
      this._emit('refreshed', reply);
    } catch (err) {
      this._emit('error', err);
    }
  }

  /** Callbacks for one transport object; frames from a stale connection are ignored. */
  _sinkFor() {
    const sink = {
      conn: null,
      frame: (frame) => {
        if (sink.conn && sink.conn === this._conn) this._onFrame(frame);
      },
      lost: (info) => {
        if (sink.conn) this._connectionLost(sink.conn, info);
      },
    };
    return sink;
  }

  /**
   * The one place a connection ends (hub close, network failure, disconnect frame, 404
   * unknown_session). `retry` goes to _scheduleRetry: `{ delayMs: 0 }` reconnects at once
   * (transport switch), `{ hold: true }` waits for reconnect() (test hook).
   */
  _connectionLost(conn, info, retry = {}) {
    if (conn !== this._conn) return;
    this._conn = null;
    const transport = conn.name;
    this.transport = null;
    const reconnect = info.reconnect !== false && this.options.reconnect;
    this.lastDisconnect = { ...info, transport };

    // A request already handed to the dead connection has an unknown outcome; reject it. A
    // fatal close (e.g. 1009) was caused by what we sent, so name that cause.
    const err =
      info.reconnect === false
        ? new CrierError(info.reason, info.message || info.reason, { closeCode: info.code })
        : new CrierError('connection_lost', `connection lost (${info.reason})`, {
            reason: info.reason,
            closeCode: info.code,
          });
    this._failRequests(err, false);
    for (const sub of this._subs.values()) sub.requestId = null;

    this._emit('disconnect', { ...info, transport, reconnect });
    if (this.state !== 'open') return; // a `disconnect` listener called close()
    if (!reconnect) {
      this.attempt = 0;
      this._failRequests(err, true); // queued ones too: nothing will send them
      this._transition('closed');
      return;
    }
    this._transition('reconnecting');
    // The hub closed us for going on past its rate limits: coming straight back would only
    // be refused again.
    const minDelayMs = info.code === RATE_LIMITED_CLOSE ? RATE_LIMITED_WAIT_MS : undefined;
    this._scheduleRetry(null, { minDelayMs, ...retry });
  }

  /**
   * Wait out the backoff, then attempt again. `delayMs` replaces the computed delay; `hold`
   * arms no timer, so only reconnect() (or the browser's `online` event) goes on. A wait the
   * hub asked for — `minDelayMs` (a `rate_limited` close), or the `Retry-After` of a refused
   * connect (`error.retryAfterMs`) — is a floor under the backoff, plus up to half again of
   * jitter, so that clients refused together do not all come back together.
   */
  _scheduleRetry(error, { delayMs, minDelayMs, hold = false } = {}) {
    if (this.state !== 'connecting' && this.state !== 'reconnecting') return; // a `state` listener called close()
    const { initialMs, maxMs, factor } = this.options.backoff;
    // Equal jitter: half the exponential delay, plus a random half. Spreads out thousands of
    // clients that lost the same hub at the same moment, while keeping a floor.
    const base = Math.min(maxMs, initialMs * factor ** Math.max(0, this.attempt - 1));
    const backoff = delayMs ?? Math.round(base / 2 + (Math.random() * base) / 2);
    const asked = Math.max(minDelayMs ?? 0, error?.retryAfterMs ?? 0);
    const delay = asked > 0 ? Math.max(backoff, Math.round(asked + (Math.random() * asked) / 2)) : backoff;
    // Armed before the event, so that a listener's close() or reconnect() finds it to cancel.
    if (!hold) {
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        this._attempt();
      }, delay);
    }
    this._emit('reconnecting', { attempt: this.attempt + 1, delayMs: delay, error });
  }

  // ---------------------------------------------------------------------------------------
  // Requests and replies

  _request(frame) {
    const id = this._nextId++;
    frame.id = id;
    return new Promise((resolve, reject) => {
      const entry = { frame, resolve, reject, sent: false, timer: null };
      this._pending.set(id, entry);
      if (this._conn) this._transmit(entry);
      else this._outbox.push(entry);
    });
  }

  _transmit(entry) {
    const conn = this._conn;
    if (!conn) return this._outbox.push(entry);
    entry.sent = true;
    const { id } = entry.frame;
    entry.timer = setTimeout(() => {
      this._settle(
        id,
        new CrierError('timeout', `no reply to ${entry.frame.type} within ${this.options.requestTimeoutMs} ms`),
      );
    }, this.options.requestTimeoutMs);
    // WebSocket sends are fire-and-forget; long-poll's /lp/send can fail with an HTTP error
    // (413 message_too_large, 400 bad_json…) that belongs to exactly the frames it carried.
    conn.send(entry.frame).catch((err) => {
      if (err.code === 'unknown_session') {
        // The session is gone: the poll loop learns it too; the request just has to fail.
        this._settle(id, new CrierError('connection_lost', 'long-poll session ended'));
        return;
      }
      this._settle(id, err);
    });
  }

  /** Resolve (`outcome` is a frame) or reject (`outcome` is an Error) a pending request. */
  _settle(id, outcome) {
    const entry = this._pending.get(id);
    if (!entry) return false;
    this._pending.delete(id);
    clearTimeout(entry.timer);
    if (outcome instanceof Error) {
      entry.reject(outcome);
      // A failed subscribe (also a resubscribe after reconnect) drops the subscription.
      if (entry.frame.type === 'subscribe') {
        const sub = this._subs.get(entry.frame.channel);
        if (sub && sub.requestId === id) {
          this._subs.delete(sub.channel);
          sub.rejectReady(outcome);
          if (sub.lastSubscribed) this._emit('error', outcome);
        }
      }
    } else {
      entry.resolve(outcome);
    }
    return true;
  }

  _failRequests(err, includeQueued) {
    for (const [id, entry] of this._pending) {
      if (entry.frame.type === 'subscribe') {
        // Subscriptions are re-sent on reconnect; only a final close abandons them.
        this._pending.delete(id);
        clearTimeout(entry.timer);
        continue;
      }
      if (entry.sent || includeQueued) this._settle(id, err);
    }
    if (includeQueued) this._outbox.length = 0;
  }

  _sendSubscribe(sub) {
    const frame = { type: 'subscribe', channel: sub.channel };
    if (sub.joinLeave) frame.join_leave = true;
    if (sub.offset !== null) {
      frame.since = sub.epoch !== null ? { epoch: sub.epoch, offset: sub.offset } : { offset: sub.offset };
    }
    const id = this._nextId++;
    frame.id = id;
    sub.requestId = id;
    // Not through _request(): no timeout (it is retried on every reconnect) and the reply is
    // handled in _onSubscribed before the promise is settled.
    const entry = { frame, resolve: () => {}, reject: () => {}, sent: true, timer: null };
    this._pending.set(id, entry);
    this._conn.send(frame).catch((err) => this._settle(id, err));
  }

  // ---------------------------------------------------------------------------------------
  // Incoming frames

  _onFrame(frame) {
    switch (frame.type) {
      case 'message':
        return this._onMessage(frame);
      case 'subscribed':
        return this._onSubscribed(frame);
      case 'missed':
        return this._onMissed(frame);
      case 'refresh_token':
        this._refreshToken(this._conn);
        return;
      case 'presence_diff':
        return this._onPresenceDiff(frame);
      case 'error': {
        const err = new CrierError(frame.code, frame.message, { frame });
        if (frame.id === undefined || !this._settle(frame.id, err)) this._emit('error', err);
        return;
      }
      default:
        // unsubscribed, published, pong, refreshed: plain replies.
        if (frame.id !== undefined) this._settle(frame.id, frame);
    }
  }

  _onSubscribed(frame) {
    const sub = this._subs.get(frame.channel);
    if (sub && (frame.id === undefined || frame.id === sub.requestId)) {
      if (sub.offset === null) {
        // A fresh subscription: live messages start after the channel's current position.
        sub.epoch = frame.epoch;
        sub.offset = frame.offset;
      } else if (sub.epoch === null) {
        sub.epoch = frame.epoch; // `since` had no epoch: it meant the current one
      } else if (sub.epoch !== frame.epoch) {
        // Numbering restarted; a `missed` (epoch_changed) follows, then all current history.
        sub.epoch = frame.epoch;
        sub.offset = 0;
      }
      // Otherwise: same epoch, we resumed; the catch-up messages follow and move the offset.
      const first = !sub.lastSubscribed;
      sub.lastSubscribed = frame;
      if (first) sub.resolveReady(frame);
      this._emit('subscribed', frame);
      if (sub.joinLeave) this._refreshPresence(sub.channel);
    }
    if (frame.id !== undefined) this._settle(frame.id, frame);
  }

  /** Reads every member again and emits `presence` `{ channel, members }`. */
  async _refreshPresence(channel) {
    try {
      const members = await this.presenceAll(channel);
      if (this._subs.get(channel)?.joinLeave) this._emit('presence', { channel, members });
    } catch (err) {
      this._emit('error', err);
    }
  }

  _onPresenceDiff(frame) {
    if (!this._subs.get(frame.channel)) return;
    this._emit('presence_diff', frame);
    for (const member of frame.leaves || []) this._emit('leave', { channel: frame.channel, member });
    for (const member of frame.joins || []) this._emit('join', { channel: frame.channel, member });
  }

  _onMissed(frame) {
    const sub = this._subs.get(frame.channel);
    if (!sub) return;
    sub.epoch = frame.epoch;
    // History restarts at first_available; anything at or below it - 1 is not coming. After
    // epoch_changed or offset_ahead our position means nothing here: take the hub's.
    const reset = frame.reason === 'epoch_changed' || frame.reason === 'offset_ahead';
    if (typeof frame.first_available === 'number') {
      sub.offset = reset ? frame.first_available - 1 : Math.max(sub.offset ?? 0, frame.first_available - 1);
    } else if (reset) {
      sub.offset = 0;
    }
    for (const fn of sub.missedHandlers) {
      try {
        fn(frame);
      } catch (err) {
        console.error('crier: onMissed handler threw', err);
      }
    }
    this._emit('missed', frame);
  }

  _onMessage(frame) {
    const sub = this._subs.get(frame.channel);
    if (!sub) return; // unsubscribed meanwhile
    // Defensive dedupe: within one epoch offsets only grow. A repeat can only come from a bug
    // or a replayed batch, and delivering it twice would break the "exactly once" promise.
    if (sub.epoch === frame.epoch && sub.offset !== null && frame.offset <= sub.offset) return;
    sub.epoch = frame.epoch;
    sub.offset = frame.offset;
    for (const handler of sub.handlers) {
      try {
        handler(frame.data, frame);
      } catch (err) {
        console.error(`crier: handler for ${frame.channel} threw`, err);
      }
    }
    this._emit('message', frame);
  }
}

// -----------------------------------------------------------------------------------------
// Transports. Each object is one connection: `send(frame)` returns a promise, `close()` ends it
// cleanly, `drop()` kills it without ceremony, and it reports frames and its end to the sink.

class WebSocketConnection {
  static open(url, sink, openTimeoutMs) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (err) {
        reject(new CrierError('ws_open_failed', String(err)));
        return;
      }
      const conn = new WebSocketConnection(ws, sink);
      let opened = false;
      const timer = setTimeout(() => {
        if (opened) return;
        ws.onclose = null;
        ws.close();
        reject(new CrierError('ws_open_failed', `WebSocket did not open within ${openTimeoutMs} ms`));
      }, openTimeoutMs);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        sink.conn = conn;
        resolve(conn);
      };
      ws.onmessage = (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return; // the hub only sends JSON text; ignore anything else
        }
        sink.frame(frame);
      };
      ws.onerror = () => {}; // always followed by onclose, which has the details
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (!opened) {
          reject(new CrierError('ws_open_failed', 'WebSocket failed to open', { closeCode: event.code }));
          return;
        }
        const code = event.code;
        sink.lost({
          code,
          reason: event.reason || CLOSE_REASONS[code] || `close_${code}`,
          message: event.reason ? `closed by hub (${code} ${event.reason})` : `closed (${code})`,
          reconnect: !FATAL_CLOSE_CODES.has(code),
        });
      };
    });
  }

  constructor(ws, sink) {
    this.name = 'websocket';
    this.ws = ws;
    this.sink = sink;
  }

  send(frame) {
    try {
      this.ws.send(JSON.stringify(frame));
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(new CrierError('network_error', String(err)));
    }
  }

  close() {
    this._detach();
    this.ws.close(1000, 'client_closed');
  }

  drop() {
    this._detach();
    this.ws.close(4999, 'dropped'); // a browser cannot abort a socket harder than this
  }

  _detach() {
    this.ws.onmessage = null;
    this.ws.onclose = null;
  }
}

class LongPollConnection {
  static async open(baseUrl, sink, token) {
    const body = token ? JSON.stringify({ token }) : '{}';
    const res = await httpJson(`${baseUrl}/lp/connect`, { method: 'POST', body });
    const conn = new LongPollConnection(baseUrl, sink, res);
    conn.token = token || null;
    sink.conn = conn;
    conn._pollLoop();
    return conn;
  }

  constructor(baseUrl, sink, { session, hold_ms: holdMs }) {
    this.name = 'longpoll';
    this.baseUrl = baseUrl;
    this.sink = sink;
    this.session = session;
    this.holdMs = holdMs || 25000;
    this.ack = 0; // the `batch` of the last response: always the right thing to acknowledge
    this.ended = false;
    this.pollAbort = null;
    this.sendQueue = [];
    this.sending = false;
    this.token = null; // with tokens on, every request proves the session's user
  }

  /** `session=…` plus the token, for every request after connect. */
  _sessionQuery() {
    const token = this.token ? `&token=${encodeURIComponent(this.token)}` : '';
    return `session=${this.session}${token}`;
  }

  /**
   * Exactly one poll in flight, always acknowledging the last batch received. A failed poll is
   * retried with the same `ack`: the hub then answers with the same batch again, so a response
   * lost in transit loses nothing.
   */
  async _pollLoop() {
    let failures = 0;
    while (!this.ended) {
      this.pollAbort = new AbortController();
      // Our own deadline well past the hold time: catches a hub that vanished silently.
      const deadline = setTimeout(() => this.pollAbort?.abort(), this.holdMs + 15000);
      let res;
      let body;
      try {
        res = await fetch(`${this.baseUrl}/lp/poll?${this._sessionQuery()}&ack=${this.ack}`, {
          cache: 'no-store',
          signal: this.pollAbort.signal,
        });
        body = res.ok ? await res.json() : await errorFromResponse(res);
      } catch (err) {
        clearTimeout(deadline);
        if (this.ended) return;
        // Network trouble: retry a couple of times on the same session before giving up.
        failures += 1;
        if (failures > 2) {
          return this._end({ reason: 'connection_lost', code: null, reconnect: true, message: String(err) });
        }
        await sleep(250 * failures);
        continue;
      }
      clearTimeout(deadline);
      if (this.ended) return;
      if (!res.ok) {
        const err = body;
        if (res.status === 409) {
          // An earlier (aborted) poll is still held by the hub; it ends within the hold time.
          await sleep(1000);
          continue;
        }
        // 404 unknown_session: the session ended (hub restart, idle reaper). Anything else
        // (503 shutting_down, 400 bad_ack) is also cured by a new session that resumes.
        return this._end({ reason: err.code, code: res.status, reconnect: true, message: err.message });
      }
      failures = 0;
      this.ack = body.batch;
      for (const frame of body.messages || []) {
        if (frame.type === 'disconnect') {
          // The last frame of a session the hub ended; the session id is now unknown.
          return this._end({
            reason: frame.reason,
            code: frame.code ?? null,
            reconnect: frame.reconnect !== false,
            message: frame.message,
          });
        }
        this.sink.frame(frame);
        if (this.ended) return;
      }
    }
  }

  /**
   * Frames go out through one POST at a time, in order. Frames queued while a POST is in
   * flight travel together as a JSON array.
   */
  send(frame) {
    return new Promise((resolve, reject) => {
      this.sendQueue.push({ frame, resolve, reject });
      this._flushSends();
    });
  }

  async _flushSends() {
    if (this.sending) return;
    this.sending = true;
    while (this.sendQueue.length && !this.ended) {
      const batch = this.sendQueue.splice(0, 64);
      const error = await this._post(batch.map((b) => b.frame));
      if (!error) {
        batch.forEach((b) => b.resolve());
      } else if (error.code === 'message_too_large' && batch.length > 1) {
        // Find the offender: resend one by one so only the oversized frame fails.
        for (const b of batch) {
          const single = await this._post([b.frame]);
          single ? b.reject(single) : b.resolve();
        }
      } else {
        batch.forEach((b) => b.reject(error));
      }
    }
    this.sending = false;
  }

  /** POST /lp/send; resolves with null on 202, or the CrierError. */
  async _post(frames) {
    try {
      await httpJson(`${this.baseUrl}/lp/send?${this._sessionQuery()}`, {
        method: 'POST',
        body: JSON.stringify(frames.length === 1 ? frames[0] : frames),
      });
      return null;
    } catch (err) {
      if (err.code === 'unknown_session') this._end({ reason: 'unknown_session', code: 404, reconnect: true });
      return err;
    }
  }

  _end(info) {
    if (this.ended) return;
    this.ended = true;
    this._rejectQueued();
    this.sink.lost(info);
  }

  _rejectQueued() {
    for (const b of this.sendQueue.splice(0)) b.reject(new CrierError('connection_lost', 'long-poll session ended'));
  }

  close() {
    if (this.ended) return;
    this.ended = true;
    this._rejectQueued();
    // Ends the session on the hub now rather than when its idle timer fires; `keepalive` lets
    // the request outlive a page being unloaded.
    fetch(`${this.baseUrl}/lp/close?${this._sessionQuery()}`, { method: 'POST', keepalive: true }).catch(() => {});
    // Abort after the close request is on its way, or the hub may see the poll go first.
    setTimeout(() => this.pollAbort?.abort(), 0);
  }

  drop() {
    this.close();
  }
}

// -----------------------------------------------------------------------------------------
// HTTP helpers

/** fetch + JSON; a non-2xx answer throws the hub's `{ error: { code, message } }` as a CrierError. */
async function httpJson(url, init) {
  let res;
  try {
    res = await fetch(url, {
      cache: 'no-store',
      ...init,
      headers: { 'Content-Type': 'application/json', ...(init && init.headers) },
    });
  } catch (err) {
    throw new CrierError('network_error', `${url}: ${err.message || err}`);
  }
  if (!res.ok) throw await errorFromResponse(res);
  try {
    return await res.json();
  } catch {
    throw new CrierError('network_error', `${url}: bad response body`);
  }
}

async function errorFromResponse(res) {
  let code = `http_${res.status}`;
  let message = `HTTP ${res.status}`;
  let limit;
  // Seconds to wait before trying again (503 overloaded, too_many_connections…); the HTTP-date
  // form is not used by the hub.
  const retryAfter = Number.parseInt(res.headers?.get('retry-after') ?? '', 10);
  const retryAfterMs = Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : undefined;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      limit = body.error.limit ?? body.limit;
    }
  } catch {
    // not JSON (a proxy's error page); keep the status
  }
  return new CrierError(code, message, { status: res.status, limit, retryAfterMs });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
