#!/usr/bin/env bash
# Prune (issue 4), full size: `forget` with a retention policy followed by `prune`, on a history
# of 100 snapshots of a changing copy of the Rust toolchain tree, coffer next to restic.
#
# usage: bench/prune-toolchain.sh [--snapshots N] [--build-only] [--only restic|coffer]
#                                 [--max-unused LIMIT] [--no-reads]
#
#   --snapshots N      snapshots in the history (default 100)
#   --build-only       build (or finish building) the histories, time nothing
#   --only TOOL        time one tool only
#   --max-unused L     passed to both tools' prune (default 10%: coffer's default; restic's is 5%)
#   --no-reads         skip the strace run that counts what prune reads
#   COFFER_BIN=PATH    time this coffer binary instead of building target/release/coffer
#
# The history is built once into bench/data/prune-toolchain/history (a copy of
# bench/data/rust-sysroot, a coffer and a restic repository, restic's cache) and reused by later
# runs; an interrupted build resumes where it stopped. Between two snapshots about 5% of the
# files change, deterministically (seeded by the step): 90% of them get 64 bytes rewritten in
# place, 5% are deleted and as many new files of 1-64 KiB appear. Snapshot i is dated
# 2026-08-01T00:00:00Z + 8h*(i-1) (100 snapshots span 33 days) with both tools' --time option.
#
# Each timed run works on a copy (cp -a) of the repository, under /usr/bin/time -v, with the same
# policy for both: --keep-daily 7 --keep-weekly 4 --keep-monthly 12, then prune with grace 0
# (coffer deletes in the same run, as restic does). The page cache stays warm (the copy was just
# written). Afterwards coffer's copy must pass `check --read-data`.
#
# The read count: coffer's forget --prune with --max-unused unlimited (no repack) on another
# copy, under `strace -ff -y`, every read(2)/pread64(2) summed by the repository folder it read
# from, and per pack file next to that pack's size.
set -euo pipefail

usage() { sed -n '5,13s/^# \{0,1\}//p' "$0"; }

SNAPS=100
BUILD_ONLY=0
TOOLS=(restic coffer)
MAX_UNUSED=10%
READS=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --snapshots) SNAPS=$2; shift ;;
        --build-only) BUILD_ONLY=1 ;;
        --only) TOOLS=("$2"); shift ;;
        --max-unused) MAX_UNUSED=$2; shift ;;
        --no-reads) READS=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

export LC_ALL=C TZ=UTC NO_COLOR=1
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
DATA=$BENCH/data
RESULTS=$BENCH/results
WORK=$DATA/prune-toolchain
HIST=$WORK/history
RUN=$WORK/run
LOGS=$WORK/logs
mkdir -p "$RESULTS" "$HIST" "$LOGS"
say() { printf '==> %s %s\n' "$(date -u +%T)" "$*" >&2; }
has_tool() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

if [[ ! -d $DATA/rust-sysroot ]]; then
    say "$DATA/rust-sysroot is missing: run bench/files.sh once to create it"
    exit 1
fi
PASSFILE=$WORK/password
printf 'coffer-bench-password\n' >"$PASSFILE"

# The tree changer (kept here so that the script is the whole benchmark).
MUTATE=$WORK/mutate.py
cat >"$MUTATE" <<'PY'
import os
import random
import sys


def main():
    tree, step = sys.argv[1], int(sys.argv[2])
    share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    rng = random.Random(0xC0FFEE * 1000 + step)
    files = []
    for d, dirs, names in os.walk(tree):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files.append(p)
    n = max(1, int(len(files) * share))
    chosen = rng.sample(files, n)
    n_delete = max(1, n // 20)
    deleted = chosen[:n_delete]
    rewritten = chosen[n_delete:n - n_delete]
    beside = chosen[n - n_delete:]
    for p in rewritten:
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.seek(rng.randrange(max(1, size - 63)) if size > 64 else 0)
            f.write(rng.randbytes(64))
    for p in deleted:
        os.remove(p)
    for k, p in enumerate(beside):
        q = os.path.join(os.path.dirname(p), f"bench-new-{step}-{k}.bin")
        with open(q, "wb") as f:
            f.write(rng.randbytes(rng.randrange(1024, 65536)))
    print(f"step {step}: {len(rewritten)} rewritten, {len(deleted)} deleted, {len(beside)} added "
          f"(of {len(files)} files)")


main()
PY

# ---------------------------------------------------------------------------------------------
# 1. The history (built once).
BASE=$(date -u -d 2026-08-01T00:00:00Z +%s)
TREE=$HIST/tree
BUILD_COFFER=$HIST/coffer # the binary that wrote the history, fixed for the whole build
step_of() { cat "$HIST/step-$1" 2>/dev/null || echo 0; }
if [[ ! -d $TREE ]]; then
    say "copying $DATA/rust-sysroot to $TREE"
    rm -rf "$TREE.part"
    cp -a "$DATA/rust-sysroot" "$TREE.part"
    mv "$TREE.part" "$TREE"
    echo 1 >"$HIST/tree-step"
fi
if [[ ! -x $BUILD_COFFER ]]; then
    [[ -x $ROOT/target/release/coffer ]] || (cd "$ROOT" && cargo build --release -p coffer-cli)
    cp "$ROOT/target/release/coffer" "$BUILD_COFFER"
fi
if [[ ! -d $HIST/repo-restic ]]; then
    RESTIC_PASSWORD_FILE=$PASSFILE restic -r "$HIST/repo-restic" init >"$LOGS/restic-init.log" 2>&1
fi
if [[ ! -d $HIST/repo-coffer ]]; then
    "$BUILD_COFFER" init -r "$HIST/repo-coffer" --password-file "$PASSFILE" >"$LOGS/coffer-init.log" 2>&1
fi
if (($(step_of restic) < SNAPS || $(step_of coffer) < SNAPS)); then
    say "building the history: $SNAPS snapshots (restic at $(step_of restic), coffer at $(step_of coffer)); load $(cut -d' ' -f1-3 /proc/loadavg)"
fi
for ((i = 1; i <= SNAPS; i++)); do
    if (($(step_of restic) >= i && $(step_of coffer) >= i)); then continue; fi
    # The tree is at step `tree-step`; step i needs it there.
    while (($(cat "$HIST/tree-step") < i)); do
        next=$(($(cat "$HIST/tree-step") + 1))
        python3 "$MUTATE" "$TREE" "$next" >>"$LOGS/mutate.log"
        echo "$next" >"$HIST/tree-step"
    done
    if (($(cat "$HIST/tree-step") != i)); then
        say "the tree is at step $(cat "$HIST/tree-step"), past $i: delete $HIST to rebuild"
        exit 1
    fi
    t=$((BASE + (i - 1) * 28800))
    if (($(step_of restic) < i)); then
        RESTIC_PASSWORD_FILE=$PASSFILE RESTIC_CACHE_DIR=$HIST/cache-restic \
            restic -r "$HIST/repo-restic" backup --host bench --time "$(date -u -d "@$t" '+%Y-%m-%d %H:%M:%S')" \
            "$TREE" >>"$LOGS/restic-backups.log" 2>&1
        echo "$i" >"$HIST/step-restic"
    fi
    if (($(step_of coffer) < i)); then
        "$BUILD_COFFER" backup -r "$HIST/repo-coffer" --password-file "$PASSFILE" --host bench \
            --time "$(date -u -d "@$t" +%Y-%m-%dT%H:%M:%SZ)" "$TREE" >>"$LOGS/coffer-backups.log" 2>&1
        echo "$i" >"$HIST/step-coffer"
    fi
    say "snapshot $i/$SNAPS (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
say "history: $SNAPS snapshots; restic $(du -sh "$HIST/repo-restic" | cut -f1), coffer $(du -sh "$HIST/repo-coffer" | cut -f1)"
((BUILD_ONLY)) && exit 0

# ---------------------------------------------------------------------------------------------
# 2. Timed forget + prune, each on a copy.
COFFER=$(realpath -m "${COFFER_BIN:-$ROOT/target/release/coffer}")
if has_tool coffer && [[ -z ${COFFER_BIN:-} ]]; then
    say "building coffer"
    (cd "$ROOT" && cargo build --release -p coffer-cli)
fi
POLICY=(--keep-daily 7 --keep-weekly 4 --keep-monthly 12)
fresh_copy() { # TOOL
    rm -rf "$RUN"
    mkdir -p "$RUN"
    cp -a "$HIST/repo-$1" "$RUN/repo-$1"
    [[ $1 == restic ]] && cp -a "$HIST/cache-restic" "$RUN/cache-restic"
    sync
}
export RESTIC_PASSWORD_FILE=$PASSFILE RESTIC_CACHE_DIR=$RUN/cache-restic
export COFFER_PASSWORD_FILE=$PASSFILE
count_snapshots() { # TOOL
    if [[ $1 == restic ]]; then
        restic -r "$RUN/repo-restic" snapshots --json 2>/dev/null
    else
        "$COFFER" snapshots -r "$RUN/repo-coffer" --json 2>/dev/null
    fi | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["snapshots"] if isinstance(d, dict) else d))'
}
declare -A ROW
for tool in "${TOOLS[@]}"; do
    fresh_copy "$tool"
    before=$(du -sb "$RUN/repo-$tool" | cut -f1)
    snaps_before=$(count_snapshots "$tool")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    say "$tool: forget ${POLICY[*]} --prune (load $load)"
    if [[ $tool == restic ]]; then
        cmd=(restic -r "$RUN/repo-restic" forget --host bench "${POLICY[@]}" --prune --max-unused "$MAX_UNUSED")
    else
        cmd=("$COFFER" forget -r "$RUN/repo-coffer" "${POLICY[@]}" --prune --grace 0s --max-unused "$MAX_UNUSED" -v)
    fi
    /usr/bin/time -v -o "$LOGS/$tool-prune.time" "${cmd[@]}" >"$LOGS/$tool-prune.log" 2>&1
    after=$(du -sb "$RUN/repo-$tool" | cut -f1)
    snaps_after=$(count_snapshots "$tool")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, a, ":"); s = 0; for (k = 1; k <= n; k++) s = s * 60 + a[k]; printf "%.2f", s}' "$LOGS/$tool-prune.time")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%d", $2 / 1024}' "$LOGS/$tool-prune.time")
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$LOGS/$tool-prune.time")
    ROW[$tool]="$wall|$rss|$cpu|$snaps_before -> $snaps_after|$((before / 1048576)) -> $((after / 1048576))|$load"
    say "$tool: ${wall}s, max RSS $rss MiB, CPU ${cpu}s, snapshots $snaps_before -> $snaps_after, repository $((before / 1048576)) -> $((after / 1048576)) MiB"
    if [[ $tool == coffer ]]; then
        say "coffer check --read-data on the pruned copy"
        if "$COFFER" check -r "$RUN/repo-coffer" --read-data >"$LOGS/coffer-check.log" 2>&1; then
            CHECK="passes"
        else
            CHECK="FAILS (see $LOGS/coffer-check.log)"
        fi
        say "coffer check --read-data $CHECK"
    fi
done

# ---------------------------------------------------------------------------------------------
# 3. What coffer's prune reads when it does not repack.
READS_MD=""
if ((READS)) && has_tool coffer; then
    fresh_copy coffer
    say "coffer forget --prune --max-unused unlimited under strace"
    rm -rf "$LOGS/strace"
    mkdir -p "$LOGS/strace"
    strace -ff -y -s 0 -e trace=read,pread64,readv,preadv,preadv2 -o "$LOGS/strace/t" \
        "$COFFER" forget -r "$RUN/repo-coffer" "${POLICY[@]}" --prune --grace 0s --max-unused unlimited \
        >"$LOGS/coffer-prune-unlimited.log" 2>&1
    READS_MD=$(python3 - "$RUN/repo-coffer" "$HIST/repo-coffer" "$LOGS/strace" <<'PY'
import collections, glob, os, re, sys
repo, hist, d = sys.argv[1], sys.argv[2], sys.argv[3]
FOOTER = 44  # coffer_core::pack::FOOTER_LEN
pat = re.compile(r'^(pread64|read|readv|preadv2?)\(\d+<([^>]*)>(?:.*, (\d+)|.*)\)\s+=\s+(\d+)')
by_dir = collections.Counter()
calls = collections.Counter()
reads = collections.defaultdict(list)  # pack -> [(offset, n)]
for f in glob.glob(os.path.join(d, "t.*")):
    for line in open(f, errors="replace"):
        m = pat.match(line)
        if not m:
            continue
        call, path, off, n = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if not path.startswith(repo + "/") or n == 0:
            continue
        top = path[len(repo) + 1:].split("/")[0]
        by_dir[top] += n
        calls[top] += 1
        if top == "data":
            reads[os.path.basename(path)].append((int(off) if call == "pread64" else -1, n))
def size_of(sub):
    if os.path.isfile(os.path.join(hist, sub)):
        return os.path.getsize(os.path.join(hist, sub)), 1
    t = c = 0
    for root, _, names in os.walk(os.path.join(hist, sub)):
        for n in names:
            t += os.path.getsize(os.path.join(root, n)); c += 1
    return t, c
def mib(b):
    return f"{b / 1048576:.1f} MiB"
print("| repository file or folder | bytes read | read calls | files there (before) | their size |")
print("|---|---|---|---|---|")
for top in ["config", "keys", "snapshots", "index", "data", "locks"]:
    t, c = size_of(top)
    print(f"| {top}{'' if top == 'config' else '/'} | {mib(by_dir[top])} | {calls[top]} | {c} | {mib(t)} |")
sizes = {}
for root, _, names in os.walk(os.path.join(hist, "data")):
    for n in names:
        sizes[n] = os.path.getsize(os.path.join(root, n))
# A footer read ends at the end of the pack; a trailer read ends where the footer starts;
# every other read is of blobs (without a repack prune reads blobs only to walk trees).
footer = trailer = blob = 0
blob_packs = set()
trailer_packs = set()
for p, rs in reads.items():
    size = sizes.get(p, 0)
    for off, n in rs:
        if off >= 0 and off + n == size:
            footer += n; trailer_packs.add(p)
        elif off >= 0 and off + n == size - FOOTER:
            trailer += n; trailer_packs.add(p)
        else:
            blob += n; blob_packs.add(p)
print()
print(f"Pack files: {len(sizes)} ({mib(sum(sizes.values()))}); read from: {len(reads)}. "
      f"Footers and trailers: {len(trailer_packs)} packs, {mib(footer + trailer)}; "
      f"blobs (the trees the mark phase walks): {len(blob_packs)} packs, {mib(blob)}; "
      f"packs never read: {len(sizes) - len(reads)} ({mib(sum(s for p, s in sizes.items() if p not in reads))}).")
PY
)
    printf '%s\n' "$READS_MD" >&2
fi

# ---------------------------------------------------------------------------------------------
# 4. Report.
OUT=$RESULTS/prune-toolchain-$(date -u +%F-%H%M%S).md
{
    echo "# forget ${POLICY[*]} --prune after $SNAPS snapshots of a changing Rust toolchain tree"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) cores, $(uptime | sed 's/.*load/load/'), warm page cache."
    echo "Data set: bench/data/rust-sysroot ($(cat "$DATA/rust-sysroot.info" 2>/dev/null | head -c 120)...),"
    echo "$(find "$TREE" -type f | wc -l) files at the last step; ~5% of the files change between snapshots, one snapshot every 8 hours."
    echo "Both prune with --max-unused $MAX_UNUSED; coffer with --grace 0s (deletes in the same run, like restic)."
    echo "restic $(restic version | cut -d' ' -f2), coffer $("$COFFER" --version | cut -d' ' -f2)."
    echo
    echo "| tool | wall seconds | max RSS (MiB) | CPU seconds | snapshots | repository (MiB) | load before |"
    echo "|---|---|---|---|---|---|---|"
    for t in "${TOOLS[@]}"; do echo "| $t | ${ROW[$t]//|/ | } |"; done
    echo
    if has_tool coffer; then
        echo "coffer check --read-data after the prune: $CHECK."
        echo
        echo '```'
        cat "$LOGS/coffer-prune.log"
        echo '```'
        echo
    fi
    if has_tool restic && has_tool coffer; then
        c=${ROW[coffer]%%|*}
        r=${ROW[restic]%%|*}
        echo "coffer / restic wall time: $(awk -v c="$c" -v r="$r" 'BEGIN{printf "%.2f", c / r}') (target: at most 0.5)."
        echo
    fi
    if [[ -n $READS_MD ]]; then
        echo "## What coffer's forget --prune reads without repacking (--max-unused unlimited), from strace"
        echo
        printf '%s\n' "$READS_MD"
        echo
        echo '```'
        cat "$LOGS/coffer-prune-unlimited.log"
        echo '```'
    fi
} | tee "$OUT"
say "saved $OUT"
