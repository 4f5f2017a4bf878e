# Starts a throwaway PostgreSQL on loopback for the tests (sourced by
# scripts/test): installs Debian's package if the machine has none, runs
# initdb in a temp dir on a free port, and exports FERRY_TEST_POSTGRES_URL.
# `stop_postgres` stops it and removes its files; call it from a trap.

# Runs a PostgreSQL program as the `postgres` user when we are root (the
# server refuses to run as root), else as ourselves.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

start_postgres() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pg_bin" ]; then
    echo "scripts/test: installing PostgreSQL (Debian package postgresql)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; then
      echo "scripts/test: PostgreSQL is missing and could not be installed" >&2
      return 1
    fi
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-pg.XXXXXX")
  [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
  pg_port=$(free_port)
  as_postgres "$pg_bin/initdb -D $pg_dir/data -A trust -U postgres" > "$pg_dir/initdb.log" 2>&1 || {
    echo "scripts/test: initdb failed:" >&2; cat "$pg_dir/initdb.log" >&2; return 1; }
  as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/log -w -o \"-k $pg_dir -p $pg_port -c listen_addresses=127.0.0.1 -c max_connections=400\" start" > /dev/null || {
    echo "scripts/test: PostgreSQL did not start:" >&2; cat "$pg_dir/log" >&2; return 1; }
  export FERRY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
  echo "scripts/test: PostgreSQL on 127.0.0.1:$pg_port" >&2
}

stop_postgres() {
  [ -n "${pg_dir:-}" ] || return 0
  as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -m immediate stop" > /dev/null 2>&1 || true
  rm -rf "$pg_dir"
  pg_dir=
}
