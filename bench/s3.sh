#!/usr/bin/env bash
# Coffer (and restic) on S3 against a local repository (issue 5). See bench/README.md.
#
# usage: bench/s3.sh [--mb N] [--no-restic] [--no-drop-caches]
#
#   --mb N            size of the data set in MB (default 400, or S3_BENCH_MB): files of
#                     the Rust sysroot's lib/ (half) and share/doc/rust/html (the rest),
#                     in sorted order, copied once to bench/data/s3-sysroot-<N>mb
#   --no-restic       skip restic even if it is installed
#   --no-drop-caches  keep the page cache warm between steps
#   COFFER_BIN=PATH   use this coffer binary instead of building target/release/coffer
#   COFFER_TOOLS_DIR  folder holding venv/bin/moto_server (default: .tools)
#
# The S3 server is moto (in memory) on 127.0.0.1, started and stopped by this script.
set -euo pipefail

usage() { sed -n '4,14s/^# \{0,1\}//p' "$0"; }

MB=${S3_BENCH_MB:-400}
RESTIC=1
DROP=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mb)
            [[ $# -ge 2 && $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || { usage >&2; exit 2; }
            MB=$2
            shift ;;
        --no-restic) RESTIC=0 ;;
        --no-drop-caches) DROP=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
[[ $MB =~ ^[0-9]+$ && $MB -gt 0 ]] || { echo "S3_BENCH_MB must be a positive number of MB" >&2; exit 2; }

export LC_ALL=C
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
DATA=$BENCH/data/s3
RESULTS=$BENCH/results
LOGS=$DATA/logs
mkdir -p "$DATA" "$RESULTS" "$LOGS"

say() { printf '==> %s\n' "$*" >&2; }
loud() { printf '\n!!!!!!!! %s !!!!!!!!\n\n' "$*" >&2; }

# ---------------------------------------------------------------- 1. tools
[[ -x /usr/bin/time ]] || { say "installing GNU time"; apt-get install -y time >"$LOGS/apt.log" 2>&1; }
command -v curl >/dev/null 2>&1 || { say "installing curl"; apt-get install -y curl >>"$LOGS/apt.log" 2>&1; }
TOOLS_DIR=${COFFER_TOOLS_DIR:-$ROOT/.tools}
MOTO=$TOOLS_DIR/venv/bin/moto_server
if [[ ! -x $MOTO ]]; then
    loud "moto_server is not installed (looked for $MOTO): run ./scripts/install-test-deps.sh (as root, on Debian)"
    exit 1
fi
TOOLS=(coffer)
if [[ $RESTIC == 1 ]]; then
    if command -v restic >/dev/null 2>&1; then TOOLS+=(restic); else say "restic is not installed: coffer only"; fi
fi

COFFER=$(realpath -m "${COFFER_BIN:-$ROOT/target/release/coffer}")
if [[ -n ${COFFER_BIN:-} ]]; then
    say "using COFFER_BIN=$COFFER_BIN (not building)"
else
    say "building coffer: cargo build --release -p coffer-cli"
    (cd "$ROOT" && cargo build --release -p coffer-cli)
fi
help=$("$COFFER" --help 2>&1 || true)
for sub in init backup restore; do
    grep -qw "$sub" <<<"$help" || { loud "$COFFER --help does not list '$sub'"; exit 1; }
done

# ---------------------------------------------------------------- 2. data set
SYSROOT=$(rustc --print sysroot)
NAME=s3-sysroot-${MB}mb
TREE=$BENCH/data/$NAME
if [[ ! -d $TREE ]]; then
    say "copying about $MB MB of $SYSROOT to $TREE"
    list=$DATA/$NAME.list
    # Sorted order; a file is taken when it still fits under the budget (no early exit: the
    # pipelines run under pipefail).
    pick() { # DIR BUDGET_BYTES: paths under DIR, then the bytes taken on the last line
        (cd "$SYSROOT" && find "$1" -type f -printf '%s\t%p\n' | sort -t$'\t' -k2) |
            awk -F'\t' -v max="$2" '$1 + s <= max { s += $1; print $2 } END { printf "%d\n", s }'
    }
    half=$((MB * 500000))
    pick lib "$half" >"$list.lib"
    used=$(tail -n1 "$list.lib")
    pick share/doc/rust/html "$((MB * 1000000 - used))" >"$list.doc"
    {
        sed '$d' "$list.lib"
        sed '$d' "$list.doc"
    } >"$list"
    rm -rf "$TREE.tmp"
    mkdir -p "$TREE.tmp"
    tar -C "$SYSROOT" -cf - -T "$list" | tar -C "$TREE.tmp" -xf -
    mv "$TREE.tmp" "$TREE"
    printf 'copied from %s (%s) on %s\n' "$SYSROOT" "$(rustc --version)" "$(date -u +%FT%TZ)" >"$TREE.info"
else
    say "reusing $TREE ($(cat "$TREE.info" 2>/dev/null || echo 'origin unknown'))"
fi
DS_FILES=$(find "$TREE" -type f | wc -l)
DS_BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}')
say "data set: $TREE: $DS_FILES files, $DS_BYTES bytes"

# ---------------------------------------------------------------- 3. moto
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BUCKET=bench
MOTO_DIR=$DATA/moto
rm -rf "$MOTO_DIR"
mkdir -p "$MOTO_DIR"
say "starting moto_server on 127.0.0.1:$PORT"
(cd "$MOTO_DIR" && AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    exec setsid "$MOTO" -H 127.0.0.1 -p "$PORT" >"$LOGS/moto.log" 2>&1) &
MOTO_PID=$!
stop_moto() {
    [[ -n ${MOTO_PID:-} ]] || return 0
    kill -TERM -- "-$MOTO_PID" 2>/dev/null || kill -TERM "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=
}
trap stop_moto EXIT
for _ in $(seq 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    kill -0 "$MOTO_PID" 2>/dev/null || { loud "moto_server exited"; cat "$LOGS/moto.log" >&2; exit 1; }
    sleep 0.1
done
code=$(curl -s -o "$LOGS/bucket.xml" -w '%{http_code}' -X PUT "http://127.0.0.1:$PORT/$BUCKET")
[[ $code == 200 ]] || { loud "creating bucket $BUCKET on moto: HTTP $code"; cat "$LOGS/bucket.xml" >&2; exit 1; }
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL_S3=$ENDPOINT

# ---------------------------------------------------------------- page cache
DROP_MODE="page cache kept warm (--no-drop-caches)"
if [[ $DROP == 1 ]]; then
    if sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        DROP_MODE="page cache dropped before every step (cold cache; moto keeps its objects in memory)"
    else
        DROP=0
        DROP_MODE="page cache NOT dropped (no permission to write /proc/sys/vm/drop_caches): warm cache"
    fi
fi
drop_caches() {
    [[ $DROP == 1 ]] || return 0
    sync
    { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
}

# ---------------------------------------------------------------- 4. run
PASSFILE=$DATA/password
printf 'coffer-bench-password\n' >"$PASSFILE"

# TOOL TARGET: point the tool at its repository (TARGET local or s3)
tool_env() {
    unset RESTIC_REPOSITORY COFFER_REPOSITORY
    case "$1-$2" in
        coffer-local) export COFFER_REPOSITORY=$DATA/repo-coffer ;;
        coffer-s3) export COFFER_REPOSITORY=s3://$BUCKET/coffer ;;
        restic-local) export RESTIC_REPOSITORY=$DATA/repo-restic ;;
        restic-s3) export RESTIC_REPOSITORY=s3:$ENDPOINT/$BUCKET/restic ;;
    esac
    export COFFER_PASSWORD_FILE=$PASSFILE RESTIC_PASSWORD_FILE=$PASSFILE
    export RESTIC_CACHE_DIR=$DATA/cache-restic-$2
}
# TOOL TARGET ARGS...: the tool's command line, in the array CMD
tool_cmd() {
    local tool=$1 target=$2
    shift 2
    case "$tool" in
        coffer) CMD=("$COFFER" --cache-dir "$DATA/cache-coffer-$target" "$@") ;;
        restic)
            if [[ $target == s3 ]]; then CMD=(restic -o s3.bucket-lookup=path "$@"); else CMD=(restic "$@"); fi ;;
    esac
}

declare -A RAW VERIFY
# KEY -- command...: RAW[KEY]="seconds kib status load cpu"
run_timed() {
    local key=$1 tf=$LOGS/$1.time log=$LOGS/$1.log load secs kib usr sys status=ok
    shift 2
    drop_caches
    load=$(cut -d' ' -f1 /proc/loadavg)
    say "$key: $*"
    if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$log" 2>&1; then
        status=FAIL
        loud "$key FAILED (see $log)"
        tail -n 20 "$log" >&2 || true
    fi
    read -r secs kib usr sys < <(tail -n1 "$tf")
    RAW[$key]="$secs $kib $status $load $(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
    say "$key: ${secs}s, max RSS $((kib / 1024)) MiB, load before $load"
}

START=$(date -u +%FT%TZ)
read -r UPTIME_START < <(uptime)
for tool in "${TOOLS[@]}"; do
    for target in local s3; do
        tool_env "$tool" "$target"
        rm -rf "$DATA/repo-$tool" "$DATA/cache-$tool-$target" "$DATA/cache-restic-$target"
        tool_cmd "$tool" "$target" init
        "${CMD[@]}" >"$LOGS/$tool-$target-init.log" 2>&1 || {
            loud "$tool init on $target failed"; cat "$LOGS/$tool-$target-init.log" >&2; exit 1; }
        cd "$BENCH/data"
        tool_cmd "$tool" "$target" backup "$NAME"
        run_timed "$tool-$target-backup" -- "${CMD[@]}"
        dir=$DATA/restore-$tool-$target
        rm -rf "$dir"
        mkdir -p "$dir"
        tool_cmd "$tool" "$target" restore latest --target "$dir"
        run_timed "$tool-$target-restore" -- "${CMD[@]}"
        cd "$ROOT"
        root=
        for c in "$dir/$NAME" "$dir$TREE" "$dir"; do
            [[ -d $c/lib ]] && { root=$c; break; }
        done
        if [[ -z $root ]]; then
            VERIFY[$tool-$target]="MISMATCH: restored tree not found under $dir"
        elif diff -r "$TREE" "$root" >"$LOGS/$tool-$target-restore.diff" 2>&1; then
            VERIFY[$tool-$target]="identical (diff -r, $(find "$root" -type f | wc -l) files)"
        else
            VERIFY[$tool-$target]="MISMATCH: $(wc -l <"$LOGS/$tool-$target-restore.diff") lines of diff -r"
        fi
        say "$tool on $target: restore ${VERIFY[$tool-$target]}"
        rm -rf "$dir"
    done
    rm -rf "$DATA/repo-$tool"
done
MOTO_HWM=$(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$MOTO_PID/status" 2>/dev/null || echo '?')
stop_moto
read -r UPTIME_END < <(uptime)

# ---------------------------------------------------------------- 5. report
cell() { # KEY -> "s | MB/s | MiB"
    local secs kib status
    read -r secs kib status _ <<<"${RAW[$1]:-- - -}"
    if [[ $secs == - ]]; then printf '– | – | –'; return; fi
    awk -v s="$secs" -v k="$kib" -v b="$DS_BYTES" -v st="$status" 'BEGIN {
        f = (st == "ok") ? "" : " FAIL"
        mbs = (s > 0) ? sprintf("%.1f", b / 1e6 / s) : "∞"
        printf "%.2f%s | %s | %.0f", s, f, mbs, k / 1024 }'
}
ratio() { # KEY_S3 KEY_LOCAL
    local a b
    read -r a _ <<<"${RAW[$1]:-- -}"
    read -r b _ <<<"${RAW[$2]:-- -}"
    if [[ $a == - || $b == - ]]; then printf '–'; return; fi
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "∞" }'
}
version_of() {
    case "$1" in
        restic) restic version | head -n1 ;;
        coffer) printf 'coffer %s (binary of %s; git %s%s)' "$("$COFFER" --version 2>/dev/null | awk '{print $NF}' || true)" \
            "$(date -u -r "$COFFER" +%FT%TZ)" \
            "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)" \
            "$(if [[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain -- . ':(exclude)bench/results' 2>/dev/null) ]]; then echo ', uncommitted changes'; fi)" ;;
    esac
}
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
OUT=$RESULTS/s3-$(date +%Y-%m-%d-%H%M%S)-${MB}mb.md
{
    echo "# Coffer on S3 (moto) vs a local repository"
    echo
    echo "- date: $START; machine: $(nproc) cores, $CPU, $MEM"
    echo "- data set: $TREE: $DS_FILES files, $DS_BYTES bytes ($(awk -v b="$DS_BYTES" 'BEGIN { printf "%.1f MiB", b / 1048576 }')), from \`$SYSROOT\` (lib/ and share/doc/rust/html)"
    echo "- S3: moto $("$TOOLS_DIR/venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null || echo '?') on 127.0.0.1 (in memory, path-style), one bucket; moto's peak RSS $MOTO_HWM"
    echo "- $DROP_MODE"
    echo "- uptime at the start: $UPTIME_START"
    echo "- uptime at the end: $UPTIME_END"
    for t in "${TOOLS[@]}"; do echo "- $t: $(version_of "$t")"; done
    echo
    echo "| tool | repository | backup s | backup MB/s | backup RSS MiB | restore s | restore MB/s | restore RSS MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for t in "${TOOLS[@]}"; do
        for target in local s3; do
            echo "| $t | $target | $(cell "$t-$target-backup") | $(cell "$t-$target-restore") |"
        done
    done
    echo
    echo "MB/s = data-set bytes (10^6) / wall seconds; RSS = peak resident set (GNU time %M)."
    echo
    echo "| tool | S3/local backup time | S3/local restore time |"
    echo "|---|---:|---:|"
    for t in "${TOOLS[@]}"; do
        echo "| $t | $(ratio "$t-s3-backup" "$t-local-backup") | $(ratio "$t-s3-restore" "$t-local-restore") |"
    done
    echo
    echo "CPU seconds (user + system) and the 1-minute load average just before each step:"
    echo
    echo "| step | CPU s | load |"
    echo "|---|---:|---:|"
    for t in "${TOOLS[@]}"; do
        for target in local s3; do
            for step in backup restore; do
                read -r _ _ _ l c <<<"${RAW[$t-$target-$step]:-- - - - -}"
                echo "| $t $target $step | $c | $l |"
            done
        done
    done
    echo
    for t in "${TOOLS[@]}"; do
        for target in local s3; do echo "- $t on $target: restore ${VERIFY[$t-$target]:-not done}"; done
    done
} >"$OUT"

echo
cat "$OUT"
echo
echo "written to $OUT (logs in $LOGS)"
status=0
for k in "${!VERIFY[@]}"; do
    [[ ${VERIFY[$k]} == identical* ]] || { loud "$k restore verification: ${VERIFY[$k]}"; status=1; }
done
for k in "${!RAW[@]}"; do
    read -r _ _ st _ <<<"${RAW[$k]}"
    [[ $st == ok ]] || status=1
done
exit $status
