//! The Lua scripts, each touching exactly one key, and how they are sent.
//!
//! Scripts go out as `EVALSHA` so only their 40-byte digests cross the wire. When
//! the server's script cache was flushed (a restart, `SCRIPT FLUSH`, a failover
//! to a replica that never saw them), the calls that answered `NOSCRIPT` are
//! loaded and re-sent; calls that succeeded are not repeated.

use redis::{Cmd, Pipeline, Script, Value};

/// Creates a session hash unless the key exists; sets its expiry.
/// KEYS[1] session; ARGV data, has_owner, owner, created, idle, absolute, expire_at.
/// Returns 1 when created, 0 on collision.
pub(crate) const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', 1, 'd', ARGV[1], 'c', ARGV[4], 'i', ARGV[5], 'a', ARGV[6])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'o', ARGV[3]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
return 1
";

/// Compare-and-set. KEYS[1] session; ARGV expected, data, has_owner, owner, idle,
/// absolute, now. The idle deadline never moves earlier (a touch since the load
/// moved it later without a new version), nor past the absolute one. Returns `{new version, 1 if the
/// owner's index is known to hold the session (or there is no owner), else 0}`,
/// -1 when missing (absent, or expired by the application's clock), -2 on
/// conflict.
pub(crate) const SAVE: &str = r"
local f = redis.call('HMGET', KEYS[1], 'v', 'i', 'a', 'o')
if not f[1] then return -1 end
if math.min(tonumber(f[2]), tonumber(f[3])) <= tonumber(ARGV[7]) then return -1 end
if f[1] ~= ARGV[1] then return -2 end
local version = tonumber(f[1]) + 1
local idle = math.min(math.max(tonumber(f[2]), tonumber(ARGV[5])), tonumber(ARGV[6]))
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2], 'i', idle, 'a', ARGV[6], 'o', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2], 'i', idle, 'a', ARGV[6])
  if f[4] then redis.call('HDEL', KEYS[1], 'o') end
end
redis.call('PEXPIREAT', KEYS[1], idle)
local indexed = ARGV[3] ~= '1' or redis.call('HEXISTS', KEYS[1], 'x:' .. ARGV[4]) == 1
return {version, indexed and 1 or 0}
";

/// Moves the deadlines of a live session. KEYS[1] session; ARGV idle, absolute,
/// expire_at, now. Returns `{owner or '', 1 if that owner's index is known to
/// hold the session (or there is no owner), else 0}` when touched, 0 when
/// missing (absent, or expired by the application's clock).
pub(crate) const TOUCH: &str = r"
local f = redis.call('HMGET', KEYS[1], 'i', 'a', 'o')
if not f[1] then return 0 end
if math.min(tonumber(f[1]), tonumber(f[2])) <= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'i', ARGV[1], 'a', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
local indexed = not f[3] or redis.call('HEXISTS', KEYS[1], 'x:' .. f[3]) == 1
return {f[3] or '', indexed and 1 or 0}
";

/// Deletes a session. KEYS[1] session. Returns the owners whose indexes hold
/// it (none when there was no session).
pub(crate) const DELETE: &str = r"
local owners = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'x:' then owners[#owners + 1] = string.sub(field, 3) end
end
redis.call('DEL', KEYS[1])
return owners
";

/// Records that an owner's index holds the session, while the session exists.
/// KEYS[1] session; ARGV owner. Returns 1.
pub(crate) const MARK_INDEXED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'x:' .. ARGV[1], '1') end
return 1
";

/// Compare-and-delete. KEYS[1] session; ARGV expected, now. Returns `{1, the
/// owners whose indexes hold it…}` when deleted, -1 when missing (absent, or
/// expired by the application's clock), -2 on conflict.
pub(crate) const DELETE_AT_VERSION: &str = r"
local f = redis.call('HMGET', KEYS[1], 'v', 'i', 'a')
if not f[1] then return -1 end
if math.min(tonumber(f[2]), tonumber(f[3])) <= tonumber(ARGV[2]) then return -1 end
if f[1] ~= ARGV[1] then return -2 end
local deleted = {1}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'x:' then deleted[#deleted + 1] = string.sub(field, 3) end
end
redis.call('DEL', KEYS[1])
return deleted
";

/// Deletes a session only while it still belongs to the owner. KEYS[1] session;
/// ARGV owner. Returns 1 when deleted, 0 when it belongs to someone else now,
/// -1 when there is no session.
pub(crate) const DELETE_IF_OWNED: &str = r"
local o = redis.call('HGET', KEYS[1], 'o')
if o == ARGV[1] then return redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return 0
";

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
    pub(crate) create: Script,
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
            create: Script::new(CREATE),
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

    /// The source of the script with this digest, to reload it after `NOSCRIPT`.
    pub(crate) fn source_of(&self, hash: &str) -> Option<&'static str> {
        [
            (&self.create, CREATE),
            (&self.save, SAVE),
            (&self.touch, TOUCH),
            (&self.delete, DELETE),
            (&self.mark_indexed, MARK_INDEXED),
            (&self.delete_at_version, DELETE_AT_VERSION),
            (&self.delete_if_owned, DELETE_IF_OWNED),
            (&self.index_add, INDEX_ADD),
            (&self.index_remove, INDEX_REMOVE),
        ]
        .into_iter()
        .find(|(script, _)| script.get_hash() == hash)
        .map(|(_, source)| source)
    }
}

/// One `EVALSHA` call: the script's digest, its single key and its arguments,
/// written into the command as they are added (numbers without an
/// intermediate string).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) hash: String,
    cmd: Cmd,
}

impl Call {
    pub(crate) fn new(script: &Script, key: Vec<u8>) -> Self {
        let hash = script.get_hash().to_owned();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&hash).arg(1).arg(key);
        Self { hash, cmd }
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
pub(crate) fn pipeline(calls: &[Call]) -> Pipeline {
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
    fn every_script_is_found_by_its_digest() {
        let scripts = Scripts::new();
        for (script, source) in [
            (&scripts.create, CREATE),
            (&scripts.save, SAVE),
            (&scripts.touch, TOUCH),
            (&scripts.delete, DELETE),
            (&scripts.mark_indexed, MARK_INDEXED),
            (&scripts.delete_at_version, DELETE_AT_VERSION),
            (&scripts.delete_if_owned, DELETE_IF_OWNED),
            (&scripts.index_add, INDEX_ADD),
            (&scripts.index_remove, INDEX_REMOVE),
        ] {
            assert_eq!(scripts.source_of(script.get_hash()), Some(source));
        }
        assert_eq!(scripts.source_of("0000"), None);
    }

    #[test]
    fn every_script_names_exactly_one_key() {
        for source in [
            CREATE,
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
