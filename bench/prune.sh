#!/usr/bin/env bash
# Prune (issue 4): time and peak RSS of `forget --prune` on a history of snapshots of a changing
# tree, coffer next to restic. See bench/README.md for the data sets.
#
# usage: bench/prune.sh [--full] [--snapshots N] [--keep N] [--only restic|coffer]
#
#   --full            the whole Rust sysroot (~1.3 GB, ~52k files) instead of the ~200 MB subset
#   --snapshots N     snapshots in the history (default 20; the issue's figure is 100)
#   --keep N          forget --keep-last N before pruning (default 5)
#   --only TOOL       run one tool only
#   COFFER_BIN=PATH   use this coffer binary instead of building target/release/coffer
#
# Between two snapshots 5% of the files (chosen at random, seeded) get 64 random bytes appended.
# The page cache stays warm: the figures compare the tools' own work.
set -euo pipefail

usage() { sed -n '4,12s/^# \{0,1\}//p' "$0"; }

MODE=quick
SNAPS=20
KEEP=5
TOOLS=(restic coffer)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --full) MODE=full ;;
        --snapshots) SNAPS=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        --only) TOOLS=("$2"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

export LC_ALL=C
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
DATA=$BENCH/data
RESULTS=$BENCH/results
WORK=$DATA/prune
LOGS=$WORK/logs
mkdir -p "$RESULTS"
rm -rf "$WORK"
mkdir -p "$WORK" "$LOGS"
say() { printf '==> %s\n' "$*" >&2; }
has_tool() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

if [[ $MODE == quick ]]; then NAME=rust-sysroot-quick; else NAME=rust-sysroot; fi
if [[ ! -d $DATA/$NAME ]]; then
    say "$DATA/$NAME is missing: run bench/files.sh $([[ $MODE == quick ]] && echo --quick) once to create it"
    exit 1
fi
TREE=$WORK/tree
say "copying $DATA/$NAME to $TREE"
cp -a "$DATA/$NAME" "$TREE"
mapfile -t FILES < <(cd "$TREE" && find . -type f | sort)
say "${#FILES[@]} files, $(du -sh "$TREE" | cut -f1)"

COFFER=$(realpath -m "${COFFER_BIN:-$ROOT/target/release/coffer}")
if has_tool coffer && [[ -z ${COFFER_BIN:-} ]]; then
    say "building coffer"
    (cd "$ROOT" && cargo build --release -p coffer-cli)
fi
PASSFILE=$WORK/password
printf 'coffer-bench-password\n' >"$PASSFILE"
export RESTIC_REPOSITORY=$WORK/repo-restic RESTIC_PASSWORD_FILE=$PASSFILE RESTIC_CACHE_DIR=$WORK/cache-restic
export COFFER_REPOSITORY=$WORK/repo-coffer COFFER_PASSWORD_FILE=$PASSFILE
has_tool restic && restic init >"$LOGS/restic-init.log" 2>&1
has_tool coffer && "$COFFER" init >"$LOGS/coffer-init.log" 2>&1

RANDOM=42
n_change=$(( ${#FILES[@]} / 20 ))
for ((i = 1; i <= SNAPS; i++)); do
    if ((i > 1)); then
        for ((k = 0; k < n_change; k++)); do
            f=${FILES[$(( (RANDOM * 32768 + RANDOM) % ${#FILES[@]} ))]}
            head -c 64 /dev/urandom >>"$TREE/$f"
        done
    fi
    has_tool restic && restic backup --host bench "$TREE" >>"$LOGS/restic-backups.log" 2>&1
    has_tool coffer && "$COFFER" backup --host bench "$TREE" >>"$LOGS/coffer-backups.log" 2>&1
    say "snapshot $i/$SNAPS"
done

declare -A ROW
timed() { # TOOL -- command...
    local tool=$1 before after
    shift 2
    before=$(du -sb "$WORK/repo-$tool" | cut -f1)
    /usr/bin/time -f '%e %M %U %S' -o "$LOGS/$tool-prune.time" "$@" >"$LOGS/$tool-prune.log" 2>&1
    after=$(du -sb "$WORK/repo-$tool" | cut -f1)
    read -r secs kib usr sys <"$LOGS/$tool-prune.time"
    ROW[$tool]="$secs|$((kib / 1024))|$(awk -v u="$usr" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')|$((before / 1048576))|$((after / 1048576))"
    say "$tool: ${secs}s, max RSS $((kib / 1024)) MiB, repository $((before / 1048576)) -> $((after / 1048576)) MiB"
}
has_tool restic && timed restic -- restic forget --keep-last "$KEEP" --prune
has_tool coffer && timed coffer -- "$COFFER" forget --keep-last "$KEEP" --prune --grace 0s
has_tool coffer && "$COFFER" check >"$LOGS/coffer-check.log" 2>&1 && say "coffer check passes"

OUT=$RESULTS/prune-$MODE-$(date -u +%F).md
{
    echo "# forget --keep-last $KEEP --prune after $SNAPS snapshots ($MODE data set, ${#FILES[@]} files, 5% changed between snapshots)"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), warm page cache"
    echo
    echo "| tool | seconds | max RSS (MiB) | CPU seconds | repository before (MiB) | after (MiB) |"
    echo "|---|---|---|---|---|---|"
    for t in "${TOOLS[@]}"; do echo "| $t | ${ROW[$t]//|/ | } |"; done
} | tee "$OUT"
