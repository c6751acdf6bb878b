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
