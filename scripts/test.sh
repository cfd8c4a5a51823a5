#!/usr/bin/env bash
# The one test command: makes sure Redis and PostgreSQL are reachable (starting,
# or on Debian installing, them when they are not), then runs formatting, lints,
# docs, packaging and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "error: need root to run: $*" >&2; return 1; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $1 is missing and this is not a Debian-like system; install $1 and re-run" >&2
    return 1
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}

wait_for() { # command, what
  for _ in $(seq 1 50); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "error: $2 did not come up" >&2
  return 1
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || apt_install redis-server
  if redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then return 0; fi
  case "$REDIS_URL" in
    redis://127.0.0.1:6379*|redis://localhost:6379*) ;;
    *) echo "error: Redis at REDIS_URL=$REDIS_URL is not answering; start it or unset REDIS_URL" >&2; return 1 ;;
  esac
  step "starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for "redis-cli -u '$REDIS_URL' ping" "Redis"
}

ensure_postgres() {
  command -v pg_isready >/dev/null 2>&1 || apt_install postgresql postgresql-client
  if psql "$DATABASE_URL" -Atc 'select 1' >/dev/null 2>&1; then return 0; fi
  case "$DATABASE_URL" in
    *@127.0.0.1:5432/*|*@localhost:5432/*) ;;
    *) echo "error: PostgreSQL at DATABASE_URL=$DATABASE_URL is not answering; start it or unset DATABASE_URL" >&2; return 1 ;;
  esac
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql postgresql-client; fi
  step "starting PostgreSQL on 127.0.0.1:5432"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for "pg_isready -h 127.0.0.1 -p 5432" "PostgreSQL"
  if ! psql "$DATABASE_URL" -Atc 'select 1' >/dev/null 2>&1; then
    echo "error: PostgreSQL is up but refuses $DATABASE_URL; allow trust auth for 127.0.0.1 or set DATABASE_URL" >&2
    return 1
  fi
}

step "build prerequisites"
# The stores' native-tls features link OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then apt_install pkg-config libssl-dev; fi

# The browser test drives Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
  apt_install chromium chromium-driver
fi

# The benchmark's quick mode drives load with wrk.
if ! command -v wrk >/dev/null 2>&1; then apt_install wrk; fi

step "services"
ensure_redis
ensure_postgres
echo "Redis: $REDIS_URL, PostgreSQL: $DATABASE_URL"

step "cargo fmt --check"
cargo fmt --all -- --check

step "dependencies' rust-version"
# Resolver 3 only prefers dependency versions whose rust-version fits ours and
# takes newer ones when none does; no toolchain of our rust-version is installed
# here to catch that by building, so compare what Cargo.lock resolved to.
command -v python3 >/dev/null 2>&1 || apt_install python3
cargo metadata --format-version 1 --all-features --locked | python3 -c '
import json, sys

def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

metadata = json.load(sys.stdin)
members = set(metadata["workspace_members"])
ours = min(version(p["rust_version"]) for p in metadata["packages"]
           if p["id"] in members and p["rust_version"])
too_new = sorted("%s %s needs Rust %s" % (p["name"], p["version"], p["rust_version"])
                 for p in metadata["packages"]
                 if p["id"] not in members and p["rust_version"]
                 and version(p["rust_version"]) > ours)
if too_new:
    sys.exit("error: dependencies newer than our rust-version %s:\n  %s"
             % (".".join(map(str, ours)), "\n  ".join(too_new)))
print("every dependency builds on Rust %s or older" % ".".join(map(str, ours)))
'

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "feature combinations of latchkey"
# Each TLS backend alone (both together is --all-features, above).
for features in "" memory redis postgres actix-session cache metrics test-util "memory,redis" "memory,postgres" "redis,postgres,actix-session" \
  "redis-rustls,postgres-rustls" "redis-native-tls,postgres-native-tls"; do
  echo "latchkey --no-default-features --features '$features'"
  cargo check -q -p latchkey --no-default-features --features "$features"
done
# The Redis store's own unit tests without TLS: how a `rediss://` URL is refused
# where the `redis` crate has no TLS compiled in.
echo "latchkey-redis --no-default-features: unit tests"
cargo test -q -p latchkey-redis --no-default-features --lib
# The default build must not pull in the Redis or PostgreSQL clients.
if cargo tree -q -p latchkey -e normal --prefix none | grep -Eq '^(redis|tokio-postgres|deadpool-postgres|latchkey-redis|latchkey-postgres) '; then
  echo "error: latchkey's default features pull in a Redis or PostgreSQL crate" >&2
  exit 1
fi
# Nor do the stores without a TLS feature pull in a TLS stack.
if cargo tree -q -p latchkey --no-default-features --features redis,postgres -e normal --prefix none \
  | grep -Eq '^(rustls|native-tls|openssl|ring|tokio-postgres-rustls|postgres-native-tls) '; then
  echo "error: latchkey's redis and postgres features without a TLS feature pull in a TLS crate" >&2
  exit 1
fi

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "doctests"
cargo test --workspace --all-features --doc

step "cargo package (each publishable crate built from its own tarball)"
# Verified, not --no-verify: a crate that includes a file from outside its own
# folder packages without complaint and fails only when its tarball is built.
# Cargo refuses uncommitted changes to a packaged crate; CI's clone is clean.
# It would package `publish = false` crates too, which may name workspace crates
# by path alone, so those are left out, read from the manifests.
never_published=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    if package["publish"] == []:
        print("--exclude", package["name"])
')
# shellcheck disable=SC2086 # one word per flag and name
cargo package --workspace $never_published

step "benchmark, quick mode (checks that it runs and that latchkey loses no update; timings are not judged)"
bench_report="${CARGO_TARGET_DIR:-target}/bench-quick.md"
mkdir -p "$(dirname "$bench_report")"
cargo run -q -p latchkey-bench -- --quick > "$bench_report"
echo "quick benchmark passed; its tables are in $bench_report"

step "tests"
# With every feature, the stores' TLS tests (private TLS servers of their own)
# run on rustls; the second run takes the native-tls paths, which the redis
# crate leaves unused while rustls is compiled in, less the conformance suite,
# which the first run already passed over TLS.
native_tls=(-p latchkey-redis -p latchkey-postgres --features latchkey-redis/tls-native-tls,latchkey-postgres/tls-native-tls --test tls --no-fail-fast)
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
  cargo nextest run "${native_tls[@]}" -E 'not test(conformance_suite)'
else
  echo "cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest)"
  cargo test --workspace --all-features --no-fail-fast --lib --bins --tests
  cargo test "${native_tls[@]}" -- --skip conformance_suite
fi
