//! The Lua run inside Redis: each script is one round trip and atomic, so a position, its
//! place in history and its fan-out can never disagree between nodes.

/// KEYS: meta hash, history list. ARGV: epoch candidate, entry (`data`, or `from` and
/// `data`: `crate::hub::stored`), history size, history TTL (ms), meta TTL (ms), pub/sub
/// channel.
///
/// Takes the channel's epoch (or makes the candidate it), increments its offset, appends
/// the entry to the history list trimmed to its size, and PUBLISHes `epoch \n offset \n entry`:
/// Redis runs a script alone, so the order of PUBLISHes on a channel is the order of its
/// offsets, on every node.
pub const PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'last', 1)
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], -size, -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], epoch .. '\n' .. offset .. '\n' .. ARGV[2])
return {epoch, offset}
";

/// KEYS: meta hash, history list. ARGV: epoch candidate, meta TTL (ms), create (1/0).
///
/// The channel's epoch, last offset and history, read together. With `create`, a channel
/// Redis does not hold gets its epoch now, so the first publish after a node joined does not
/// look like a new generation to it.
pub const SNAPSHOT: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  if ARGV[3] ~= '1' then
    return false
  end
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local last = redis.call('HGET', KEYS[1], 'last') or '0'
return {epoch, last, redis.call('LRANGE', KEYS[2], 0, -1)}
";

/// The Lua both presence scripts share: collect what changed per channel, then PUBLISH one
/// diff per channel on its message channel. The `P` line can never be an epoch (12 hex
/// digits), so a node's gap logic never takes a diff for a message.
macro_rules! diffs {
    () => {
        r#"
local function diff(diffs, order, ch)
  local d = diffs[ch]
  if not d then
    d = {joins = {}, leaves = {}}
    diffs[ch] = d
    order[#order + 1] = ch
  end
  return d
end
local function publish_diffs(node, diffs, order)
  for _, ch in ipairs(order) do
    local d = diffs[ch]
    redis.call('PUBLISH', 'crier:msg:' .. ch, 'P\n' .. node .. '\n{"joins":[' ..
      table.concat(d.joins, ',') .. '],"leaves":[' .. table.concat(d.leaves, ',') .. ']}')
  end
end
"#
    };
}

/// ARGV: node, then per change five values: `+` or `-`, channel, client, user (empty
/// without tokens), member JSON (empty for `-`).
///
/// Applies one batch of a node's presence changes. A channel's members live in
/// `crier:pres:{ch}` (field `node:client` → member JSON), its distinct users in
/// `crier:pusers:{ch}` (user → connections), and each node's members in
/// `crier:node:{node}:members` (field `ch \n client` → user), which makes removing a dead
/// node's members cost what that node had. Idempotent: a member added twice counts once, a
/// removal of what is not there changes nothing. Keys are built here, so this needs a single
/// Redis (not Redis Cluster, which crier does not support yet).
///
/// What changed is then PUBLISHed on each channel's `crier:msg:{ch}`, one diff per channel:
/// `P \n node \n {"joins":[member…],"leaves":[member…]}` (see `diffs!`).
pub const PRESENCE_BATCH: &str = concat!(
    diffs!(),
    r"
local node = ARGV[1]
local mine = 'crier:node:' .. node .. ':members'
local diffs, order = {}, {}
for i = 2, #ARGV - 4, 5 do
  local ch, client, user = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local members = 'crier:pres:' .. ch
  local users = 'crier:pusers:' .. ch
  local field = node .. ':' .. client
  if ARGV[i] == '+' then
    if redis.call('HSET', members, field, ARGV[i + 4]) == 1 then
      if user ~= '' then redis.call('HINCRBY', users, user, 1) end
      redis.call('HSET', mine, ch .. '\n' .. client, user)
      local d = diff(diffs, order, ch)
      d.joins[#d.joins + 1] = ARGV[i + 4]
    end
  else
    local member = redis.call('HGET', members, field)
    if member then
      redis.call('HDEL', members, field)
      if user ~= '' and redis.call('HINCRBY', users, user, -1) <= 0 then
        redis.call('HDEL', users, user)
      end
      redis.call('HDEL', mine, ch .. '\n' .. client)
      local d = diff(diffs, order, ch)
      d.leaves[#d.leaves + 1] = member
    end
  end
end
publish_diffs(node, diffs, order)
return 0
"
);

/// ARGV: node, most members to remove, the node's heartbeat key (or empty).
///
/// Removes up to that many of a node's members (a dead node's, or this node's own before it
/// states them again), publishing them as leaves; returns how many it still has — or -1, touching nothing, when the
/// heartbeat key given exists (the node came back: it states its own members again). Bounded per call so Redis, which runs
/// a script alone, is never held long: the caller repeats it.
pub const PRESENCE_REMOVE_NODE: &str = concat!(
    diffs!(),
    r"
local node = ARGV[1]
if ARGV[3] ~= '' and redis.call('EXISTS', ARGV[3]) == 1 then
  return -1
end
local mine = 'crier:node:' .. node .. ':members'
local scan = redis.call('HSCAN', mine, 0, 'COUNT', ARGV[2])
local found = scan[2]
local diffs, order = {}, {}
for i = 1, #found, 2 do
  local link, user = found[i], found[i + 1]
  local cut = string.find(link, '\n', 1, true)
  if cut then
    local ch, client = string.sub(link, 1, cut - 1), string.sub(link, cut + 1)
    local members = 'crier:pres:' .. ch
    local users = 'crier:pusers:' .. ch
    local member = redis.call('HGET', members, node .. ':' .. client)
    if member then
      redis.call('HDEL', members, node .. ':' .. client)
      if user ~= '' and redis.call('HINCRBY', users, user, -1) <= 0 then
        redis.call('HDEL', users, user)
      end
      local d = diff(diffs, order, ch)
      d.leaves[#d.leaves + 1] = member
    end
  end
  redis.call('HDEL', mine, link)
end
publish_diffs(node, diffs, order)
return redis.call('HLEN', mine)
"
);

/// A user's connections across the cluster, for `user_online`/`user_offline` once per
/// cluster: `crier:user:{user}` holds one field per node with a connection of the user, plus
/// `~on` (announced online) and `~zero` (Unix ms when its last node let go); each node's users
/// are in `crier:node:{node}:users`. The key is deleted once `user_offline` is decided, so
/// Redis holds nothing for offline users.
///
/// ARGV: node, user. Returns 1 when the user is online anew (this node announces it).
pub const USER_UP: &str = r"
local key = 'crier:user:' .. ARGV[2]
redis.call('HSET', key, ARGV[1], '1')
redis.call('HDEL', key, '~zero')
redis.call('SADD', 'crier:node:' .. ARGV[1] .. ':users', ARGV[2])
return redis.call('HSETNX', key, '~on', '1')
";

/// ARGV: node, user. The node let go of the user's last connection it held. Returns 1 when
/// no node holds one any more (the caller checks again after the grace: [`USER_OFFLINE`]).
pub const USER_DOWN: &str = r"
local key = 'crier:user:' .. ARGV[2]
redis.call('SREM', 'crier:node:' .. ARGV[1] .. ':users', ARGV[2])
if redis.call('HDEL', key, ARGV[1]) == 0 then
  return 0
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 1) ~= '~' then
    return 0
  end
end
local now = redis.call('TIME')
redis.call('HSET', key, '~zero', now[1] * 1000 + math.floor(now[2] / 1000))
return 1
";

/// ARGV: user, grace (ms). Decides `user_offline`, once: returns `{0, zero}` when no node has
/// held a connection of the user for the grace (the key is deleted: exactly one caller gets
/// this), `{1, ms}` to ask again in that many ms, `{2, 0}` when there is nothing to decide
/// (the user came back, or another node decided).
pub const USER_OFFLINE: &str = r"
local key = 'crier:user:' .. ARGV[1]
local zero = redis.call('HGET', key, '~zero')
if not zero then
  return {2, 0}
end
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 1) ~= '~' then
    return {2, 0}
  end
end
local now = redis.call('TIME')
local wait = tonumber(zero) + tonumber(ARGV[2]) - (now[1] * 1000 + math.floor(now[2] / 1000))
if wait > 0 then
  return {1, wait}
end
redis.call('DEL', key)
return {0, tonumber(zero)}
";
