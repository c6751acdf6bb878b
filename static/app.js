// The demo page: a chat room and a notifications feed on top of crier.js.
//
// Everything the hub does is shown on screen (state, transport, offsets, errors, `missed`),
// because the page doubles as the surface the browser tests in tests/browser/ drive.

import { CrierClient } from './crier.js';

const $ = (sel) => document.querySelector(sel);
const NOTIFICATIONS = 'notifications';
const CHANNEL_RE = /^[A-Za-z0-9_\-.:@]{1,128}$/;
// Identifies this tab's own chat messages (names are not unique).
const TAB_ID = Math.random().toString(36).slice(2, 10);

const params = new URLSearchParams(location.search);
const forceLongPoll = params.get('transport') === 'longpoll';

// A connection token for hubs with tokens (docs/SECURITY.md): from `?token=` or the field in
// the header; a real app would fetch one from its backend here instead.
const tokenInput = $('#token');
tokenInput.value = params.get('token') || sessionStorage.getItem('crier-token') || '';

const client = new CrierClient({
  transport: forceLongPoll ? 'longpoll' : 'auto',
  backoff: { initialMs: 500, maxMs: 10000 },
  getToken: async () => tokenInput.value.trim() || null,
});
tokenInput.addEventListener('change', () => {
  sessionStorage.setItem('crier-token', tokenInput.value.trim());
  // Reconnect now with the new token; every channel resumes where it was.
  client.setTransport(client.options.transport);
});
// For the browser tests and for poking at it from the devtools console.
window.crier = client;

let chatChannel = null;

// ------------------------------------------------------------------------------------------
// Status line

function renderStatus() {
  const pill = $('#conn-state');
  pill.textContent = client.state;
  pill.dataset.state = client.state;
  document.body.dataset.state = client.state;
  document.body.dataset.transport = client.transport || '';
  $('#transport').textContent = client.transport || '—';
  $('#attempts').textContent = String(client.attempt);
  $('#reconnects').textContent = String(client.reconnects);
  $('#reconnect-btn').hidden = client.state !== 'closed' && client.state !== 'reconnecting';
  renderOffsets();
}

function renderOffsets() {
  const list = $('#offsets');
  const positions = client.positions();
  const channels = Object.keys(positions);
  list.replaceChildren(
    ...(channels.length ? channels : ['—']).map((channel) => {
      const li = document.createElement('li');
      if (channel === '—') {
        li.className = 'muted';
        li.textContent = 'no channels';
        return li;
      }
      const pos = positions[channel];
      li.dataset.channel = channel;
      li.dataset.offset = pos.offset ?? '';
      li.title = pos.epoch ? `epoch ${pos.epoch}` : 'waiting for the hub';
      li.innerHTML = '<span class="k"></span> <b></b>';
      li.querySelector('.k').textContent = channel;
      li.querySelector('b').textContent = pos.offset ?? '…';
      return li;
    }),
  );
}

client.on('state', renderStatus);
client.on('subscribed', renderOffsets);

// ------------------------------------------------------------------------------------------
// Notices: missed messages, hub errors, disconnect reasons

function notice(kind, text, { key } = {}) {
  const list = $('#notices');
  if (key) list.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
  const li = document.createElement('li');
  li.className = `notice ${kind}`;
  li.dataset.kind = kind;
  if (key) li.dataset.key = key;
  const span = document.createElement('span');
  span.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'dismiss';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.onclick = () => li.remove();
  li.append(span, close);
  list.prepend(li);
  while (list.children.length > 6) list.lastElementChild.remove();
}

client.on('missed', (frame) => {
  renderOffsets();
  // The hub forgets a channel with neither subscribers nor history; coming back to it gives a
  // new epoch. If we had seen nothing on it (offset 0) there was nothing to lose: the new
  // epoch's history is replayed in full anyway. Not worth alarming the user.
  if (frame.reason === 'epoch_changed' && frame.since?.offset === 0) return;
  const why =
    frame.reason === 'epoch_changed'
      ? 'the channel restarted its numbering (hub restart?)'
      : `history no longer holds everything after #${frame.since?.offset}`;
  const from = frame.first_available != null ? `; showing from #${frame.first_available}` : '';
  notice('missed', `Missed messages on ${frame.channel}: ${why}${from}.`, { key: `missed:${frame.channel}` });
});

client.on('error', (err) => notice('error', `Hub error ${err.code}: ${err.message}`));

client.on('disconnect', (info) => {
  if (info.reason === 'transport_changed' || info.reason === 'dropped') return;
  const code = info.code != null ? ` (${info.code})` : '';
  if (!info.reconnect) {
    notice('error', `Hub closed the connection: ${info.reason}${code}. ${info.message || ''}`.trim(), {
      key: 'disconnect',
    });
  } else {
    notice('warn', `Disconnected: ${info.reason}${code}; reconnecting and resuming…`, { key: 'disconnect' });
  }
});

client.on('open', ({ reconnected }) => {
  if (reconnected) $('#notices [data-key="disconnect"]')?.remove();
});

client.on('fallback', () => notice('warn', 'WebSocket unavailable; using long-poll.', { key: 'fallback' }));

$('#reconnect-btn').onclick = () => client.reconnect();

// ------------------------------------------------------------------------------------------
// Force long-poll toggle: switches the live client; channels resume where they were.

const toggle = $('#force-lp');
toggle.checked = forceLongPoll;
toggle.onchange = () => {
  const url = new URL(location.href);
  if (toggle.checked) url.searchParams.set('transport', 'longpoll');
  else url.searchParams.delete('transport');
  history.replaceState(null, '', url);
  client.setTransport(toggle.checked ? 'longpoll' : 'auto');
};

// ------------------------------------------------------------------------------------------
// Chat

const nameInput = $('#name');
nameInput.value = localStorage.getItem('crier.name') || `guest-${Math.floor(Math.random() * 9000 + 1000)}`;

function timeOf(ts) {
  const d = ts ? new Date(ts) : new Date();
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function onChat(data, msg) {
  const log = $('#chat-log');
  log.querySelector('.empty')?.remove();
  const payload = data && typeof data === 'object' ? data : { text: String(data) };
  const li = document.createElement('li');
  li.className = 'chat-msg' + (payload.from === TAB_ID ? ' mine' : '');
  li.dataset.offset = msg.offset;
  li.innerHTML =
    '<div class="meta"><b class="who"></b><span class="when"></span><span class="off"></span></div><div class="msg-text"></div>';
  // With tokens on, the hub stamps the sender it verified (`from`); a typed name is only shown
  // when there is no verified one.
  const verified = msg.from?.user ? msg.from.info?.name || msg.from.user : null;
  li.querySelector('.who').textContent = verified || payload.name || 'anonymous';
  if (verified) li.querySelector('.who').title = `verified user ${msg.from.user}`;
  li.querySelector('.when').textContent = timeOf(payload.ts);
  li.querySelector('.off').textContent = `#${msg.offset}`;
  li.querySelector('.msg-text').textContent = payload.text ?? JSON.stringify(data);
  log.append(li);
  log.scrollTop = log.scrollHeight;
  renderOffsets();
}

// Who is in the chat room: the members the hub lists after each (re)subscribe, kept up to
// date by the joins and leaves it sends (PROTOCOL.md "Presence").
const online = new Map();

function memberLabel(member) {
  return member.info?.name || member.user || member.client;
}

function renderOnline() {
  const names = [...online.values()].map(memberLabel).sort();
  const list = $('#online');
  list.replaceChildren(
    ...names.map((name) => Object.assign(document.createElement('span'), { className: 'member', textContent: name })),
  );
  list.dataset.count = String(names.length);
}

// Client ids are per node: on a scale-out hub a member is its node and client.
const memberKey = (member) => `${member.node ?? ''}/${member.client}`;

client.on('presence', ({ channel, members }) => {
  if (channel !== chatChannel) return;
  online.clear();
  for (const member of members) online.set(memberKey(member), member);
  renderOnline();
});
client.on('join', ({ channel, member }) => {
  if (channel !== chatChannel) return;
  online.set(memberKey(member), member);
  renderOnline();
});
client.on('leave', ({ channel, member }) => {
  if (channel !== chatChannel) return;
  online.delete(memberKey(member));
  renderOnline();
});

$('#join-form').onsubmit = async (event) => {
  event.preventDefault();
  const room = $('#room').value.trim();
  const channel = `chat:${room}`;
  if (!CHANNEL_RE.test(channel)) {
    notice('error', `"${room}" is not a valid room name (letters, digits and _ - . : @).`);
    return;
  }
  localStorage.setItem('crier.name', nameInput.value.trim());
  if (chatChannel === channel) return;
  if (chatChannel) client.unsubscribe(chatChannel, onChat).catch(() => {});
  chatChannel = channel;
  online.clear();
  renderOnline();
  $('#chat-channel').textContent = channel;
  $('#chat-log').replaceChildren(
    Object.assign(document.createElement('li'), { className: 'empty', textContent: `Joined ${channel}. Say hello!` }),
  );
  $('#chat-input').disabled = false;
  $('#chat-send').disabled = false;
  $('#chat-input').focus();
  renderOffsets();
  try {
    await client.subscribe(channel, onChat, { joinLeave: true });
    $('#chat-panel').dataset.joined = channel;
  } catch (err) {
    notice('error', `Could not join ${channel}: ${err.code} — ${err.message}`);
  }
  renderOffsets();
};

$('#chat-form').onsubmit = async (event) => {
  event.preventDefault();
  const input = $('#chat-input');
  const text = input.value;
  if (!text.trim() || !chatChannel) return;
  const name = nameInput.value.trim() || 'anonymous';
  input.value = '';
  try {
    await client.publish(chatChannel, { name, text, from: TAB_ID, ts: Date.now() });
  } catch (err) {
    input.value = text; // keep it so the user can fix and resend
    const limit = err.limit ? ` (limit ${err.limit} bytes)` : '';
    notice('error', `Message not sent — hub error ${err.code}${limit}: ${err.message}`, { key: 'send-error' });
  }
};

// ------------------------------------------------------------------------------------------
// Notifications

const curl = `curl -X POST -H 'Content-Type: application/json' -d '{"title":"Hello"}' http://${location.host}/api/publish/notifications`;
$('#curl').textContent = curl;

$('#copy-curl').onclick = async () => {
  const btn = $('#copy-curl');
  try {
    await navigator.clipboard.writeText(curl);
  } catch {
    // Clipboard API needs a secure context; plain http on a LAN address falls back to a selection.
    const range = document.createRange();
    range.selectNodeContents($('#curl'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand?.('copy');
  }
  btn.textContent = 'Copied';
  setTimeout(() => (btn.textContent = 'Copy'), 1500);
};

function onNotification(data, msg) {
  const list = $('#notif-list');
  list.querySelector('.empty')?.remove();
  const li = document.createElement('li');
  li.className = 'notif';
  li.dataset.offset = msg.offset;
  const isObj = data && typeof data === 'object' && !Array.isArray(data);
  const title = isObj && typeof data.title === 'string' ? data.title : typeof data === 'string' ? data : null;
  const rest = isObj ? Object.fromEntries(Object.entries(data).filter(([k]) => k !== 'title')) : null;
  li.innerHTML =
    '<div class="meta"><span class="when"></span><span class="off"></span></div><div class="title"></div><pre class="body"></pre>';
  li.querySelector('.when').textContent = timeOf();
  li.querySelector('.off').textContent = `#${msg.offset}`;
  li.querySelector('.title').textContent = title ?? '(no title)';
  const body = li.querySelector('.body');
  if (title === null) body.textContent = JSON.stringify(data, null, 2);
  else if (rest && Object.keys(rest).length) body.textContent = JSON.stringify(rest, null, 2);
  else body.remove();
  list.prepend(li);
  while (list.children.length > 100) list.lastElementChild.remove();
  renderOffsets();
}

$('#notif-form').onsubmit = async (event) => {
  event.preventDefault();
  const input = $('#notif-title-input');
  const title = input.value.trim() || 'Hello';
  try {
    const res = await fetch(`/api/publish/${NOTIFICATIONS}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ title }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw Object.assign(new Error(body.error?.message || `HTTP ${res.status}`), {
        code: body.error?.code || res.status,
      });
    }
    input.value = '';
  } catch (err) {
    notice('error', `Publish failed: ${err.code ?? ''} ${err.message}`.trim());
  }
};

// ------------------------------------------------------------------------------------------
// Hub figures from GET /api/stats: whatever numeric fields it returns, flattened.

function flatten(obj, prefix = '', out = []) {
  for (const [key, value] of Object.entries(obj ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'number') out.push([name, value]);
    else if (value && typeof value === 'object' && !Array.isArray(value)) flatten(value, name, out);
  }
  return out;
}

// The figures worth a glance; everything else /api/stats returns goes under "all figures".
const HEADLINE_STATS = [
  'connections',
  'websocket',
  'long_poll',
  'channels',
  'published',
  'deliveries',
  'delivered',
  'replayed',
  'evicted_slow',
];

function statChip([name, value]) {
  const li = document.createElement('li');
  li.dataset.stat = name;
  li.dataset.value = String(value);
  li.innerHTML = '<span class="k"></span> <b></b>';
  li.querySelector('.k').textContent = name.replace(/_/g, ' ');
  li.querySelector('b').textContent = value.toLocaleString();
  return li;
}

async function pollStats() {
  const list = $('#stats');
  try {
    const res = await fetch('/api/stats', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const figures = flatten(await res.json());
    const headline = figures.filter(([name]) => HEADLINE_STATS.includes(name));
    const shown = headline.length ? headline : figures.slice(0, 6);
    const rest = figures.filter((f) => !shown.includes(f));
    list.replaceChildren(...shown.map(statChip));
    if (!figures.length) list.innerHTML = '<li class="muted">no figures</li>';
    $('#stats-all').replaceChildren(...rest.map(statChip));
    $('#stats-more').hidden = rest.length === 0;
    $('#stats-more summary').textContent = `${rest.length} more`;
  } catch {
    list.innerHTML = '<li class="muted">stats unavailable</li>';
  }
}

let statsTimer = null;
function scheduleStats() {
  clearTimeout(statsTimer);
  if (document.visibilityState === 'hidden') return;
  statsTimer = setTimeout(async () => {
    await pollStats();
    scheduleStats();
  }, 2000);
}
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') pollStats().then(scheduleStats);
});

// ------------------------------------------------------------------------------------------
// Start

window.addEventListener('pagehide', () => client.close());
// Back/forward cache: a restored page resumes its channels where it left off.
window.addEventListener('pageshow', (event) => event.persisted && client.connect());
client
  .subscribe(NOTIFICATIONS, onNotification)
  .catch((err) => notice('error', `Could not subscribe to notifications: ${err.code}`));
client.connect();
renderStatus();
pollStats().then(scheduleStats);
// Join the default room at once, so a fresh page is live with no clicks.
$('#join-form').requestSubmit();
