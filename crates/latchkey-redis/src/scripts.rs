//! The Lua scripts, each touching exactly one key, and how they are sent.
//!
//! Session values follow the layout in [`crate::layout`]; every session script
//! reads the value with one `GET`, finds the fields it needs with anchored
//! patterns (never parsing the data) and writes at most once. The two that run
//! on ordinary requests, save and touch, read only what they need inline; the
//! rarer ones share one reader of the whole header.
//!
//! Scripts go out as `EVALSHA` so only their 40-byte digests cross the wire. When
//! the server's script cache was flushed (a restart, `SCRIPT FLUSH`, a failover
//! to a replica that never saw them), the calls that answered `NOSCRIPT` are
//! loaded (with redis-rs's `Script::load_async`) and re-sent; calls that
//! succeeded are not repeated.

use redis::{Cmd, Pipeline, Script, Value};

/// A session script: the shared reader of the layout, then `$body`.
///
/// `read(s)` returns the header fields as strings (`version`, `created`,
/// `idle`, `absolute`), the owners whose indexes hold the session
/// (`indexed`), the owner (`false` when none), and positions: `index_at`
/// (start of the index count), `entries_at` (first index entry) and `tail_at`
/// (start of the last seen, idle timeout, owner and data).
/// `expired(r, now)` is the application clock's view of the deadlines.
macro_rules! session_script {
    ($body:literal) => {
        concat!(
            r"
local function read(s)
  local version, created, idle, absolute, index_at = string.match(s, '^2:(%d+):(%d+):(%d+):(%d+):()')
  if not version then error({err = 'ERR latchkey: not a session value (layout 2)'}) end
  local count, entries_at = string.match(s, '^(%d+):()', index_at)
  if not count then error({err = 'ERR latchkey: session value has no index count'}) end
  local indexed, at = {}, entries_at
  for _ = 1, tonumber(count) do
    local len, from = string.match(s, '^(%d+):()', at)
    if not len or from + tonumber(len) - 1 > #s then
      error({err = 'ERR latchkey: session value has a broken index entry'})
    end
    indexed[#indexed + 1] = string.sub(s, from, from + tonumber(len) - 1)
    at = from + tonumber(len)
  end
  local owner_len, owner_at = string.match(s, '^%d+:%d+:(%-?%d+):()', at)
  if not owner_len then error({err = 'ERR latchkey: session value has no owner field'}) end
  local owner = false
  if owner_len ~= '-1' then
    if string.sub(owner_len, 1, 1) == '-' or owner_at + tonumber(owner_len) - 1 > #s then
      error({err = 'ERR latchkey: session value has a broken owner field'})
    end
    owner = string.sub(s, owner_at, owner_at + tonumber(owner_len) - 1)
  end
  return {version = version, created = created, idle = idle, absolute = absolute,
    count = tonumber(count), indexed = indexed, owner = owner,
    index_at = index_at, entries_at = entries_at, tail_at = at}
end
local function expired(r, now)
  return math.min(tonumber(r.idle), tonumber(r.absolute)) <= tonumber(now)
end
local function holds(r, owner)
  for _, o in ipairs(r.indexed) do if o == owner then return true end end
  return false
end
",
            $body
        )
    };
}

/// Compare-and-set. KEYS[1] session; ARGV expected version, idle, absolute,
/// now, has_owner, owner, tail (idle timeout, owner and data as the layout
/// writes them), last seen. The idle deadline and last seen never move earlier
/// (a touch since the load moved them later without a new version), nor the
/// idle deadline past the absolute one. Returns
/// `{new version, 1 if the owner's index is known to hold the session and to
/// live as long as it (or there is no owner), else 0}`, -1 when missing
/// (absent, or expired by the application's clock), -2 on conflict. A later
/// absolute deadline counts as not indexed, so that the index's expiry is
/// moved too.
pub(crate) const SAVE: &str = r"
local s = redis.call('GET', KEYS[1])
if not s then return -1 end
local version, created, idle, absolute, count, at = string.match(s, '^2:(%d+):(%d+):(%d+):(%d+):(%d+):()')
if not version then return redis.error_reply('ERR latchkey: not a session value (layout 2)') end
local now, stored_idle, stored_absolute = tonumber(ARGV[4]), tonumber(idle), tonumber(absolute)
if stored_idle <= now or stored_absolute <= now then return -1 end
if version ~= ARGV[1] then return -2 end
local new_absolute = tonumber(ARGV[3])
local next_idle, next_idle_ms = ARGV[2], tonumber(ARGV[2])
if stored_idle > next_idle_ms then next_idle, next_idle_ms = idle, stored_idle end
if next_idle_ms > new_absolute then next_idle = ARGV[3] end
local tail_at, holds = at, false
for _ = 1, tonumber(count) do
  local len, from = string.match(s, '^(%d+):()', tail_at)
  if not len or from + tonumber(len) - 1 > #s then
    return redis.error_reply('ERR latchkey: session value has a broken index entry')
  end
  if string.sub(s, from, from + tonumber(len) - 1) == ARGV[6] then holds = true end
  tail_at = from + tonumber(len)
end
local seen = string.match(s, '^(%d+):', tail_at)
if not seen then return redis.error_reply('ERR latchkey: session value has no last-seen field') end
if tonumber(seen) < tonumber(ARGV[8]) then seen = ARGV[8] end
local next_version = string.format('%d', tonumber(version) + 1)
redis.call('SET', KEYS[1], '2:' .. next_version .. ':' .. created .. ':' .. next_idle .. ':' .. ARGV[3] .. ':'
  .. string.sub(s, at - #count - 1, tail_at - 1) .. seen .. ':' .. ARGV[7], 'PXAT', next_idle)
local indexed = ARGV[5] ~= '1' or (holds and new_absolute <= stored_absolute)
return {tonumber(next_version), indexed and 1 or 0}
";

/// Moves the deadlines of a live session, and its last seen unless the stored
/// one is later. KEYS[1] session; ARGV idle, absolute, expire_at, now, seen
/// at. Returns `{1 if it has an owner else 0, owner or '', 1 if
/// that owner's index is known to hold the session and to live as long as it
/// (or there is no owner), else 0}` when touched, 0 when missing (absent, or
/// expired by the application's clock).
pub(crate) const TOUCH: &str = r"
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
local version, created, idle, absolute, count, at = string.match(s, '^2:(%d+):(%d+):(%d+):(%d+):(%d+):()')
if not version then return redis.error_reply('ERR latchkey: not a session value (layout 2)') end
local now, stored_absolute = tonumber(ARGV[4]), tonumber(absolute)
if tonumber(idle) <= now or stored_absolute <= now then return 0 end
local entries, tail_at = {}, at
for _ = 1, tonumber(count) do
  local len, from = string.match(s, '^(%d+):()', tail_at)
  if not len or from + tonumber(len) - 1 > #s then
    return redis.error_reply('ERR latchkey: session value has a broken index entry')
  end
  entries[string.sub(s, from, from + tonumber(len) - 1)] = true
  tail_at = from + tonumber(len)
end
local seen, rest_at, owner_len, owner_at = string.match(s, '^(%d+):()%d+:(%-?%d+):()', tail_at)
if not seen then return redis.error_reply('ERR latchkey: session value has no owner field') end
if tonumber(seen) < tonumber(ARGV[5]) then seen = ARGV[5] end
local owner = false
if owner_len ~= '-1' then
  if string.sub(owner_len, 1, 1) == '-' or owner_at + tonumber(owner_len) - 1 > #s then
    return redis.error_reply('ERR latchkey: session value has a broken owner field')
  end
  owner = string.sub(s, owner_at, owner_at + tonumber(owner_len) - 1)
end
redis.call('SET', KEYS[1], '2:' .. version .. ':' .. created .. ':' .. ARGV[1] .. ':' .. ARGV[2] .. ':'
  .. string.sub(s, at - #count - 1, tail_at - 1) .. seen .. ':' .. string.sub(s, rest_at), 'PXAT', ARGV[3])
local indexed = not owner or (entries[owner] and tonumber(ARGV[2]) <= stored_absolute)
return {owner and 1 or 0, owner or '', indexed and 1 or 0}
";

/// Deletes a session. KEYS[1] session. Returns the owners whose indexes hold
/// it (none when there was no session).
pub(crate) const DELETE: &str = session_script!(
    r"
local s = redis.call('GET', KEYS[1])
if not s then return {} end
local r = read(s)
redis.call('DEL', KEYS[1])
return r.indexed
"
);

/// Records that an owner's index holds the session, while the session exists.
/// KEYS[1] session; ARGV owner. Returns 1.
pub(crate) const MARK_INDEXED: &str = session_script!(
    r"
local s = redis.call('GET', KEYS[1])
if not s then return 1 end
local r = read(s)
if holds(r, ARGV[1]) then return 1 end
redis.call('SET', KEYS[1], '2:' .. r.version .. ':' .. r.created .. ':' .. r.idle .. ':' .. r.absolute .. ':'
  .. (r.count + 1) .. ':' .. string.sub(s, r.entries_at, r.tail_at - 1) .. #ARGV[1] .. ':' .. ARGV[1]
  .. string.sub(s, r.tail_at), 'KEEPTTL')
return 1
"
);

/// Compare-and-delete. KEYS[1] session; ARGV expected, now. Returns `{1, the
/// owners whose indexes hold it…}` when deleted, -1 when missing (absent, or
/// expired by the application's clock), -2 on conflict.
pub(crate) const DELETE_AT_VERSION: &str = session_script!(
    r"
local s = redis.call('GET', KEYS[1])
if not s then return -1 end
local r = read(s)
if expired(r, ARGV[2]) then return -1 end
if r.version ~= ARGV[1] then return -2 end
redis.call('DEL', KEYS[1])
local deleted = {1}
for _, o in ipairs(r.indexed) do deleted[#deleted + 1] = o end
return deleted
"
);

/// Deletes a session only while it still belongs to the owner. KEYS[1] session;
/// ARGV owner. Returns 1 when deleted, 0 when it belongs to someone else now,
/// -1 when there is no session.
pub(crate) const DELETE_IF_OWNED: &str = session_script!(
    r"
local s = redis.call('GET', KEYS[1])
if not s then return -1 end
if read(s).owner == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"
);

/// Adds a session to an owner's index and keeps the index alive at least until
/// `expire_at`. KEYS[1] owner index; ARGV member, expire_at, now.
pub(crate) const INDEX_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or ttl < tonumber(ARGV[2]) - tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1
";

/// Removes a session from an owner's index. KEYS[1] owner index; ARGV member.
/// A script rather than `SREM` so that it travels with the other index calls.
/// Returns how many were removed.
pub(crate) const INDEX_REMOVE: &str = r"
return redis.call('SREM', KEYS[1], ARGV[1])
";

/// The loaded scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) save: Script,
    pub(crate) touch: Script,
    pub(crate) delete: Script,
    pub(crate) mark_indexed: Script,
    pub(crate) delete_at_version: Script,
    pub(crate) delete_if_owned: Script,
    pub(crate) index_add: Script,
    pub(crate) index_remove: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            save: Script::new(SAVE),
            touch: Script::new(TOUCH),
            delete: Script::new(DELETE),
            mark_indexed: Script::new(MARK_INDEXED),
            delete_at_version: Script::new(DELETE_AT_VERSION),
            delete_if_owned: Script::new(DELETE_IF_OWNED),
            index_add: Script::new(INDEX_ADD),
            index_remove: Script::new(INDEX_REMOVE),
        }
    }
}

/// One `EVALSHA` call: the script's digest, its single key and its arguments,
/// written into the command as they are added (numbers without an
/// intermediate string).
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    /// What is loaded when the server answers `NOSCRIPT`.
    pub(crate) script: &'a Script,
    cmd: Cmd,
}

impl<'a> Call<'a> {
    pub(crate) fn new(script: &'a Script, key: Vec<u8>) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(1).arg(key);
        Self { script, cmd }
    }

    pub(crate) fn arg(mut self, arg: impl redis::ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub(crate) fn arg_bytes(self, arg: Vec<u8>) -> Self {
        self.arg(arg)
    }

    pub(crate) fn command(&self) -> &Cmd {
        &self.cmd
    }
}

/// Whether a pipelined reply says the script is not in the server's cache.
pub(crate) fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(err) if err.code() == "NOSCRIPT")
}

/// A pipeline of the calls, with per-call errors returned as values.
pub(crate) fn pipeline(calls: &[Call<'_>]) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in calls {
        pipe.add_command(call.command().clone());
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_exactly_one_key() {
        for source in [
            SAVE,
            TOUCH,
            DELETE,
            MARK_INDEXED,
            DELETE_AT_VERSION,
            DELETE_IF_OWNED,
            INDEX_ADD,
            INDEX_REMOVE,
        ] {
            assert!(source.contains("KEYS[1]"));
            assert!(
                !source.contains("KEYS[2]"),
                "a script must not span two keys (cluster slots)"
            );
        }
    }
}
