#!/usr/bin/env bash
# Coffer's PostgreSQL backup and restore against pg_dump/pg_restore (issue 3). See bench/README.md.
#
# usage: bench/postgres.sh [--scale N] [--noise-mb M] [--transactions T]
#
#   --scale N          pgbench -i scale (default 30: about 450 MB with indexes)
#   --noise-mb M       size of the hard-to-compress text table (default 200)
#   --transactions T   pgbench -t for the changed-database backup (default 20000)
#   COFFER_BIN=PATH    use this coffer binary instead of building target/release/coffer
#
# Starts its own PostgreSQL (the newest in /usr/lib/postgresql) on 127.0.0.1 in a temporary
# folder, run as the postgres user when started as root; everything is removed at the end.
set -euo pipefail

usage() { sed -n '4,12s/^# \{0,1\}//p' "$0"; }
SCALE=30
NOISE_MB=200
TX=20000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --scale) SCALE=$2; shift ;;
        --noise-mb) NOISE_MB=$2; shift ;;
        --transactions) TX=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $PGBIN/initdb ]] || { echo "PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }
BIN=${COFFER_BIN:-$ROOT/target/release/coffer}
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release -p coffer-cli)
say() { printf '==> %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/coffer-pgbench.XXXXXX)
chmod 755 "$WORK"
RUNAS=()
if [[ $(id -u) == 0 ]]; then RUNAS=(runuser -u postgres --); chown postgres "$WORK"; fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w \
    -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=2GB -c checkpoint_timeout=30min" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
URL="postgres://postgres@127.0.0.1:$PORT"
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

say "loading: pgbench -i -s $SCALE, plus $NOISE_MB MB of random base64 text"
"$PGBIN/createdb" bench
"$PGBIN/pgbench" -i -q -s "$SCALE" bench 2>/dev/null
ROWS=$((NOISE_MB * 1024 * 1024 / 800))
psql -d bench -c "CREATE EXTENSION IF NOT EXISTS pgcrypto" \
    -c "CREATE TABLE noise (id int PRIMARY KEY, body text)" \
    -c "INSERT INTO noise SELECT i, encode(gen_random_bytes(600), 'base64') FROM generate_series(1, $ROWS) i" \
    -c "VACUUM ANALYZE"
DBSIZE=$(psql -d bench -At -c "SELECT pg_database_size('bench')")

export COFFER_REPOSITORY=$WORK/repo COFFER_PASSWORD=bench COFFER_KDF_PARAMS=1024,1,1
"$BIN" -q init
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

say "backups"
sync
T_FC=$(secs "$PGBIN/pg_dump" -Fc -f "$WORK/bench.dump" bench)
T_FD=$(secs "$PGBIN/pg_dump" -Fd -j2 -f "$WORK/bench.dir" bench)
t0=$(date +%s.%N)
FIRST=$("$BIN" --json backup "$URL/bench" --jobs 2)
T_CB=$(echo "$(date +%s.%N) - $t0" | bc)
SIZE_FC=$(du -sb "$WORK/bench.dump" | cut -f1)
SIZE_FD=$(du -sb "$WORK/bench.dir" | cut -f1)
SIZE_REPO=$(du -sb "$WORK/repo" | cut -f1)
TOTAL=$(echo "$FIRST" | field total_bytes)

say "restores"
"$PGBIN/createdb" r_pg
T_PR=$(secs "$PGBIN/pg_restore" -j2 -d r_pg "$WORK/bench.dir")
T_CR=$(secs "$BIN" restore latest --target "$URL/r_coffer" --jobs 2 --yes)
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history noise; do
    a=$(psql -d r_pg -At -c "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $t t")
    b=$(psql -d r_coffer -At -c "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $t t")
    [[ $a == "$b" ]] || { echo "!!! table $t differs between the two restores" >&2; exit 1; }
done

say "second backups"
ADDED_SAME=$("$BIN" --json backup "$URL/bench" --jobs 2 | field bytes_added)
"$PGBIN/pgbench" -n -t "$TX" bench >/dev/null 2>&1
ADDED_TX=$("$BIN" --json backup "$URL/bench" --jobs 2 | field bytes_added)

ratio() { echo "scale=2; $1 / $2" | bc; }
pct() { echo "scale=3; 100 * $1 / $2" | bc; }
cat <<EOF

PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), pgbench scale $SCALE + $NOISE_MB MB noise: database $DBSIZE bytes, COPY data $TOTAL bytes; $(nproc) cores

| step | coffer | pg_dump / pg_restore | coffer / reference | target |
|---|---:|---:|---:|---|
| backup (wall s) | $T_CB | -Fc: $T_FC, -Fd -j2: $T_FD | $(ratio "$T_CB" "$T_FD") of -Fd -j2 | <= 1.2 |
| stored bytes | $SIZE_REPO (repository) | -Fc: $SIZE_FC, -Fd: $SIZE_FD | | |
| restore (wall s) | $T_CR | pg_restore -j2: $T_PR | $(ratio "$T_CR" "$T_PR") | <= 1.2 |
| unchanged 2nd backup adds | $ADDED_SAME bytes ($(pct "$ADDED_SAME" "$DBSIZE") % of the database) | | | < 1 % |
| after pgbench -t $TX adds | $ADDED_TX bytes ($(pct "$ADDED_TX" "$DBSIZE") %) | | | |
EOF
