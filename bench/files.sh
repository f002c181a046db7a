#!/usr/bin/env bash
# Coffer vs restic on a real file tree (issue 2). See bench/README.md.
#
# usage: bench/files.sh [--quick] [--only restic|coffer] [--no-drop-caches] [--runs N]
#
#   --quick           use a ~200 MB, ~1.3k-file subset of the Rust sysroot (lib/rustlib/*/lib,
#                     two doc books) instead of the whole sysroot (~1.3 GB, ~52k files)
#   --only TOOL       run one tool only; the other tool's column is filled from its
#                     last run in the same mode (bench/results/last-TOOL-MODE[-warm].tsv)
#   --no-drop-caches  keep the page cache warm between steps
#   --runs N          run the whole comparison N times, alternating which tool goes first,
#                     and report each step's median time (peak RSS: the highest of all runs)
#   COFFER_BIN=PATH   use this coffer binary instead of building target/release/coffer
#
# Needs root for apt-get and for dropping the page cache (it runs without the latter).
set -euo pipefail

usage() { sed -n '4,15s/^# \{0,1\}//p' "$0"; }

MODE=full
TOOLS=(restic coffer)
DROP=1
RUNS=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) MODE=quick ;;
        --only)
            [[ $# -ge 2 ]] || { usage >&2; exit 2; }
            case "$2" in restic | coffer) TOOLS=("$2") ;; *) usage >&2; exit 2 ;; esac
            shift ;;
        --no-drop-caches) DROP=0 ;;
        --runs)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
            RUNS=$2
            shift ;;
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
LOGS=$DATA/logs
mkdir -p "$DATA" "$RESULTS" "$LOGS"

say() { printf '==> %s\n' "$*" >&2; }
loud() { printf '\n!!!!!!!! %s !!!!!!!!\n\n' "$*" >&2; }
has_tool() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------- 1. packages
need=()
command -v restic >/dev/null 2>&1 || need+=(restic)
[[ -x /usr/bin/time ]] || need+=(time)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [[ ${#need[@]} -gt 0 ]]; then
    say "installing ${need[*]} from Debian's packages"
    if ! apt-get install -y "${need[@]}" >"$LOGS/apt.log" 2>&1; then
        apt-get update >>"$LOGS/apt.log" 2>&1
        apt-get install -y "${need[@]}" >>"$LOGS/apt.log" 2>&1
    fi
fi

# ---------------------------------------------------------------- 2. data set
SYSROOT=$(rustc --print sysroot)
if [[ $MODE == quick ]]; then NAME=rust-sysroot-quick; else NAME=rust-sysroot; fi
TREE=$DATA/$NAME
MODLIST=$DATA/$NAME.modified.tsv   # size<TAB>path of files appended to by step "modify"

revert_modification() {
    [[ -f $MODLIST ]] || return 0
    say "reverting the 5% modification (truncating the files listed in $MODLIST)"
    local size path
    while IFS=$'\t' read -r size path; do
        if [[ -e $TREE/$path ]]; then truncate -s "$size" "$TREE/$path"; fi
    done <"$MODLIST"
    rm -f "$MODLIST"
}

if [[ ! -d $TREE ]]; then
    say "copying $SYSROOT to $TREE ($MODE)"
    rm -rf "$TREE.tmp"
    mkdir -p "$TREE.tmp"
    if [[ $MODE == quick ]]; then
        (cd "$SYSROOT" && cp -a --parents lib/rustlib/*/lib share/doc/rust/html/{book,error_codes} "$TREE.tmp/")
    else
        cp -a "$SYSROOT/." "$TREE.tmp/"
    fi
    mv "$TREE.tmp" "$TREE"
    printf 'copied from %s (%s) on %s\n' "$SYSROOT" "$(rustc --version)" "$(date -u +%FT%TZ)" >"$DATA/$NAME.info"
else
    say "reusing $TREE ($(cat "$DATA/$NAME.info" 2>/dev/null || echo 'origin unknown'))"
fi
revert_modification

tree_bytes() { find "$TREE" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}'; }
DS_FILES=$(find "$TREE" -type f | wc -l)
DS_ENTRIES=$(find "$TREE" | wc -l)
DS_BYTES=$(tree_bytes)
DS_DU=$(du -sb "$TREE" | cut -f1)
DS_DUH=$(du -sh "$TREE" | cut -f1)
say "data set: $TREE: $DS_FILES files ($DS_ENTRIES entries), $DS_BYTES bytes in files, du -sb $DS_DU ($DS_DUH)"

# ---------------------------------------------------------------- 3. coffer
COFFER=$(realpath -m "${COFFER_BIN:-$ROOT/target/release/coffer}")
if has_tool coffer; then
    if [[ -n ${COFFER_BIN:-} ]]; then
        say "using COFFER_BIN=$COFFER_BIN (not building)"
    else
        say "building coffer: cargo build --release -p coffer-cli"
        (cd "$ROOT" && cargo build --release -p coffer-cli)
    fi
    help=$("$COFFER" --help 2>&1 || true)
    for sub in init backup restore check; do
        if ! grep -qw "$sub" <<<"$help"; then
            loud "$COFFER --help does not list '$sub': the coffer CLI is not ready"
            exit 1
        fi
    done
fi

# ---------------------------------------------------------------- page cache
DROP_MODE="page cache kept warm (--no-drop-caches)"
if [[ $DROP == 1 ]]; then
    if sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        DROP_MODE="page cache dropped before every step (cold cache)"
    else
        DROP=0
        DROP_MODE="page cache NOT dropped (no permission to write /proc/sys/vm/drop_caches): warm cache"
    fi
fi
say "$DROP_MODE"
WARM=''
if [[ $DROP == 0 ]]; then WARM=-warm; fi
drop_caches() {
    [[ $DROP == 1 ]] || return 0
    sync
    { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
}

# ---------------------------------------------------------------- tools
PASSFILE=$DATA/password
printf 'coffer-bench-password\n' >"$PASSFILE"

tool_env() { # TOOL: point the tool at its repository
    case "$1" in
        restic)
            export RESTIC_REPOSITORY=$DATA/repo-restic
            export RESTIC_PASSWORD_FILE=$PASSFILE
            export RESTIC_CACHE_DIR=$DATA/cache-restic ;;
        coffer)
            export COFFER_REPOSITORY=$DATA/repo-coffer
            export COFFER_PASSWORD_FILE=$PASSFILE ;;
    esac
}
tool_bin() { case "$1" in restic) echo restic ;; coffer) echo "$COFFER" ;; esac; }
tool_version() {
    case "$1" in
        restic) restic version | head -n1 ;;
        coffer) printf 'coffer %s (binary of %s; git %s%s)' "$("$COFFER" --version 2>/dev/null | awk '{print $NF}' || true)" \
            "$(date -u -r "$COFFER" +%FT%TZ)" \
            "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)" \
            "$(if [[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain -- . ':(exclude)bench/results' 2>/dev/null) ]]; then echo ', uncommitted changes'; fi)" ;;
    esac
}

declare -A VERSION
STEPS=(first rescan second restore check)
step_label() {
    case "$1" in
        first) echo "first backup" ;;
        rescan) echo "rescan (nothing changed)" ;;
        second) echo "second backup (~5% changed)" ;;
        restore) echo "restore latest" ;;
        check) echo "check --read-data" ;;
    esac
}

# raw figures of this run: RAW_TOOL_STEP="seconds kib bytes status load cpu_seconds"
run_timed() { # TOOL STEP BYTES -- command...
    local tool=$1 step=$2 bytes=$3 tf log load secs kib usr sys cpu status=ok
    shift 4
    tf=$LOGS/$tool-$step.time
    log=$LOGS/$tool-$step.log
    drop_caches
    load=$(cut -d' ' -f1 /proc/loadavg)
    say "$tool: $(step_label "$step"): $*"
    if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$log" 2>&1; then
        status=FAIL
        loud "$tool $(step_label "$step") FAILED (see $log)"
        tail -n 20 "$log" >&2 || true
    fi
    read -r secs kib usr sys < <(tail -n1 "$tf")
    cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    say "$tool: $(step_label "$step"): ${secs}s (CPU ${cpu}s), max RSS $((kib / 1024)) MiB, load before $load"
    printf -v "RAW_${tool}_${step}" '%s %s %s %s %s %s' "$secs" "$kib" "$bytes" "$status" "$load" "$cpu"
}

init_repo() { # TOOL
    local tool=$1
    tool_env "$tool"
    rm -rf "$DATA/repo-$tool" "$DATA/cache-$tool"
    say "$tool: init $DATA/repo-$tool"
    "$(tool_bin "$tool")" init >"$LOGS/$tool-init.log" 2>&1 || {
        loud "$tool init failed"; cat "$LOGS/$tool-init.log" >&2; exit 1; }
    if [[ $tool == restic ]]; then
        # record the repository version (2 = compression, default "auto")
        v=$(restic cat config 2>/dev/null | awk -F': *' '/"version"/ {gsub(/[^0-9]/, "", $2); print $2}')
        VERSION[restic]+=", repository version ${v:-?} (compression auto)"
    fi
}

do_backup() { # TOOL STEP: back up the relative path NAME from DATA
    tool_env "$1"
    cd "$DATA"
    run_timed "$1" "$2" "$CUR_BYTES" -- "$(tool_bin "$1")" backup "$NAME"
    cd "$ROOT"
}

# Where the restore put the tree: DIR/NAME, DIR/<absolute path> or DIR itself.
restored_root() { # DIR
    local c
    for c in "$1/$NAME" "$1$TREE" "$1"; do
        [[ -d $c/lib/rustlib ]] && { echo "$c"; return 0; }
    done
    c=$(find "$1" -type d -name "$NAME" -print -quit 2>/dev/null || true)
    [[ -n $c ]] && echo "$c"
}

declare -A VERIFY REPO_BYTES
do_restore_and_check() { # TOOL
    local tool=$1 dir root v
    tool_env "$tool"
    dir=$DATA/restore-$tool-$ROUND
    mkdir -p "$dir"
    run_timed "$tool" restore "$CUR_BYTES" -- "$(tool_bin "$tool")" restore latest --target "$dir"
    root=$(restored_root "$dir" || true)
    if [[ -z $root ]]; then
        v="MISMATCH: restored tree not found under $dir"
    elif diff -r "$TREE" "$root" >"$LOGS/$tool-restore.diff" 2>&1; then
        v="identical (diff -r, $(find "$root" -type f | wc -l) files)"
    else
        v="MISMATCH: $(wc -l <"$LOGS/$tool-restore.diff") lines of diff -r in $LOGS/$tool-restore.diff"
    fi
    if [[ $v == MISMATCH* ]]; then
        loud "$tool restore differs from the data set: $v"
        head -n 20 "$LOGS/$tool-restore.diff" >&2 || true
    else
        say "$tool restore: $v"
    fi
    # a mismatch in any round stays in the report
    if [[ $v == MISMATCH* ]] && ((RUNS > 1)); then v+=" (round $ROUND)"; fi
    if [[ ${VERIFY[$tool]:-} != MISMATCH* ]]; then VERIFY[$tool]=$v; fi
    run_timed "$tool" check "$CUR_BYTES" -- "$(tool_bin "$tool")" check --read-data
    REPO_BYTES[$tool]=$(du -sb "$DATA/repo-$tool" | cut -f1)
}

modify_5pct() {
    say "modifying every 20th file (sorted order): appending 4 KiB of deterministic pseudo-random bytes"
    local list=$DATA/$NAME.files n i=0 k=0 f
    (cd "$TREE" && find . -type f -print0 | sort -z) >"$list"
    n=$(tr -cd '\0' <"$list" | wc -c)
    # one 4 KiB block per modified file, the same bytes on every run (AES-CTR of zeros)
    head -c $(((n / 20 + 1) * 4096)) /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K 00112233445566778899aabbccddeeff -iv 00000000000000000000000000000000 >"$DATA/append.bin"
    : >"$MODLIST.tmp"
    while IFS= read -r -d '' f; do
        i=$((i + 1))
        ((i % 20 == 0)) || continue
        printf '%s\t%s\n' "$(stat -c %s "$TREE/$f")" "$f" >>"$MODLIST.tmp"
    done <"$list"
    mv "$MODLIST.tmp" "$MODLIST"
    while IFS=$'\t' read -r _ f; do
        dd if="$DATA/append.bin" bs=4096 skip="$k" count=1 status=none >>"$TREE/$f"
        k=$((k + 1))
    done <"$MODLIST"
    MODIFIED=$k
    say "modified $MODIFIED of $n files"
}

# ---------------------------------------------------------------- 4. run
# compiler processes running now (pgrep -x rejects a pattern longer than 15 characters)
# shellcheck disable=SC2009
busy() { ps -eo comm= | grep -cxE 'rustc|cargo|cc|c\+\+|ld|ld\.lld|rust-lld|build-script-.*' || true; }
for t in "${TOOLS[@]}"; do rm -rf "$DATA/restore-$t" "$DATA/restore-$t"-*; done
START=$(date -u +%FT%TZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_START=$(busy)

# One round: both tools through every step. ALL[TOOL,STEP] collects each round's raw figures.
declare -A ALL
one_round() { # TOOL... in the order they go
    local t s v
    CUR_BYTES=$DS_BYTES
    for t in "$@"; do
        VERSION[$t]=$(tool_version "$t")
        init_repo "$t"
        do_backup "$t" first
        do_backup "$t" rescan
    done
    modify_5pct
    CUR_BYTES=$(tree_bytes)
    for t in "$@"; do do_backup "$t" second; done
    for t in "$@"; do do_restore_and_check "$t"; done
    revert_modification
    for t in "$@"; do
        for s in "${STEPS[@]}"; do
            v=RAW_${t}_$s
            ALL[$t,$s]+="${!v:-- - - - - -}"$'\n'
        done
    done
}
for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
    say "round $ROUND of $RUNS"
    # shellcheck disable=SC2046 # tool names are single words
    if ((ROUND % 2 == 1)); then one_round "${TOOLS[@]}"; else one_round $(printf '%s\n' "${TOOLS[@]}" | tac); fi
done
# The restored trees are deleted only now, after every restore: ext4 without a journal (as
# here) skips inodes freed in the last 60 to 360 seconds when it allocates new ones, so a
# restore that follows the deletion of 52k files pays for it (about 6% of its CPU, measured
# with perf: recently_deleted under __ext4_new_inode). Each round restores into its own
# folder for that reason (1.3 GB per tool and round). Leftovers of an interrupted run are
# deleted at the start, before the backups.
for t in "${TOOLS[@]}"; do rm -rf "$DATA/restore-$t"-*; done

# Each step's figures: the round with the median time (the lower middle for an even count),
# with the highest peak RSS of all rounds.
for t in "${TOOLS[@]}"; do
    for s in "${STEPS[@]}"; do
        lines=$(printf '%s' "${ALL[$t,$s]}" | grep -v '^$' | sort -t' ' -k1,1g)
        n=$(wc -l <<<"$lines")
        mid=$(sed -n "$(((n + 1) / 2))p" <<<"$lines")
        maxkib=$(awk '$2 ~ /^[0-9]+$/ && $2 > m { m = $2 } END { print m + 0 }' <<<"$lines")
        fail=$(awk '$4 != "ok" { f = 1 } END { print f + 0 }' <<<"$lines")
        read -r a b c d e f <<<"$mid"
        if ((fail)); then d=FAIL; fi
        printf -v "RAW_${t}_${s}" '%s %s %s %s %s %s' "$a" "$maxkib" "$c" "$d" "$e" "$f"
        # every round's seconds, in round order, for the report
        printf -v "ROUNDS_${t}_${s}" '%s' "$(printf '%s' "${ALL[$t,$s]}" | grep -v '^$' | awk '{ printf "%s%s", (NR > 1 ? " / " : ""), $1 }')"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_END=$(busy)

# raw figures, so that a later --only run of the other tool can show both
for t in "${TOOLS[@]}"; do
    raw=$RESULTS/last-$t-$MODE$WARM.tsv
    {
        printf '# date=%s\n# version=%s\n# cache=%s\n# dataset_bytes=%s\n# dataset_files=%s\n' \
            "$START" "${VERSION[$t]}" "$DROP_MODE" "$DS_BYTES" "$DS_FILES"
        printf '# repo_bytes=%s\n# restore=%s\n# load_start=%s\n# load_end=%s\n' \
            "${REPO_BYTES[$t]:-}" "${VERIFY[$t]:-}" "$LOAD_START" "$LOAD_END"
        printf '# step\tseconds\tmax_rss_kib\tbytes\tstatus\tload1_before\tcpu_seconds\n'
        for s in "${STEPS[@]}"; do
            v=RAW_${t}_$s
            read -r a b c d e f <<<"${!v:-- - - - - -}"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$a" "$b" "$c" "$d" "$e" "$f"
        done
    } >"$raw"
done

# the other tool's figures from its last run in this mode, if not run now
declare -A FROM
for t in restic coffer; do
    has_tool "$t" && { FROM[$t]="this run"; continue; }
    raw=$RESULTS/last-$t-$MODE$WARM.tsv
    [[ -f $raw ]] || continue
    FROM[$t]="earlier run of $(sed -n 's/^# date=//p' "$raw") ($raw)"
    VERSION[$t]=$(sed -n 's/^# version=//p' "$raw")
    REPO_BYTES[$t]=$(sed -n 's/^# repo_bytes=//p' "$raw")
    VERIFY[$t]=$(sed -n 's/^# restore=//p' "$raw")
    while IFS=$'\t' read -r s a b c d e f; do
        [[ $s == \#* ]] && continue
        printf -v "RAW_${t}_${s}" '%s %s %s %s %s %s' "$a" "$b" "$c" "$d" "$e" "${f:--}"
    done <"$raw"
done

# ---------------------------------------------------------------- 5. report
cell() { # TOOL STEP -> "s | MB/s | MiB"
    local v=RAW_${1}_$2 secs kib bytes status
    read -r secs kib bytes status _ <<<"${!v:-- - - - -}"
    if [[ $secs == - || $secs == "" ]]; then printf '– | – | –'; return; fi
    awk -v s="$secs" -v k="$kib" -v b="$bytes" -v st="$status" 'BEGIN {
        f = (st == "ok") ? "" : " FAIL"
        mbs = (s > 0) ? sprintf("%.1f", b / 1e6 / s) : "∞"
        printf "%.2f%s | %s | %.0f", s, f, mbs, k / 1024 }'
}
secs_of() { local v=RAW_${1}_$2 s; read -r s _ <<<"${!v:-- -}"; echo "$s"; }
kib_of() { local v=RAW_${1}_$2 k; read -r _ k _ <<<"${!v:-- - -}"; echo "$k"; }
status_of() { local v=RAW_${1}_$2 st; read -r _ _ _ st _ <<<"${!v:-- - - FAIL}"; echo "$st"; }
# A target whose commands failed is never met: "FAIL (a command failed)".
failed() { local t s; for t in "$@"; do for s in "${STEPS[@]}"; do [[ $(status_of "$t" "$s") == ok ]] || return 0; done; done; return 1; }
extra_of() { # TOOL STEP -> "load cpu"
    local v=RAW_${1}_$2 l c; read -r _ _ _ _ l c <<<"${!v:-- - - - - -}"; echo "${l:--} ${c:--}"; }
ratio() { # STEP -> restic s / coffer s
    local r c
    r=$(secs_of restic "$1"); c=$(secs_of coffer "$1")
    if [[ $r == - || $c == - || -z $r || -z $c ]]; then printf '–'; return; fi
    awk -v r="$r" -v c="$c" 'BEGIN { if (c > 0) printf "%.2fx", r / c; else printf "∞" }'
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
SUFFIX='' SUBSET=''
if [[ $MODE == quick ]]; then SUFFIX=-quick SUBSET=' (lib/rustlib/*/lib and share/doc/rust/html/{book,error_codes} only)'; fi
OUT=$RESULTS/files-$(date +%Y-%m-%d-%H%M%S)$SUFFIX$WARM.md
{
    echo "# Coffer vs restic: files benchmark ($MODE)"
    echo
    echo "- date: $START; machine: $(nproc) cores, $CPU, $MEM"
    echo "- data set: $TREE, a copy of \`$SYSROOT\`$SUBSET:" \
        "$DS_FILES files, $DS_BYTES bytes in files ($(mib "$DS_BYTES")), du -sb $DS_DU"
    echo "- second backup: ${MODIFIED:-?} files (every 20th, sorted) each grown by 4 KiB; data set then $CUR_BYTES bytes"
    echo "- $DROP_MODE"
    if ((RUNS > 1)); then
        echo "- $RUNS rounds, alternating which tool goes first; each figure is the median round's (peak RSS: the highest of all rounds)"
    fi
    echo "- load average: $LOAD_START at the start, $LOAD_END at the end;" \
        "compiler processes running: $BUSY_START at the start, $BUSY_END at the end"
    for t in restic coffer; do
        [[ -n ${FROM[$t]:-} ]] || { echo "- $t: not run"; continue; }
        echo "- $t: ${VERSION[$t]}; figures from ${FROM[$t]}"
    done
    echo
    echo "| step | restic s | restic MB/s | restic RSS MiB | coffer s | coffer MB/s | coffer RSS MiB | ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${STEPS[@]}"; do
        echo "| $(step_label "$s") | $(cell restic "$s") | $(cell coffer "$s") | $(ratio "$s") |"
    done
    echo
    echo "MB/s = data-set bytes (10^6) / wall seconds; RSS = peak resident set (GNU time %M);" \
        "ratio = restic s / coffer s (above 1: coffer is faster)."
    echo
    echo "CPU seconds (user + system, less disturbed than wall time by other work on the machine)" \
        "and the 1-minute load average just before each step:"
    echo
    echo "| step | restic CPU s | restic load | coffer CPU s | coffer load |"
    echo "|---|---:|---:|---:|---:|"
    for s in "${STEPS[@]}"; do
        read -r rl rc <<<"$(extra_of restic "$s")"
        read -r cl cc <<<"$(extra_of coffer "$s")"
        echo "| $(step_label "$s") | $rc | $rl | $cc | $cl |"
    done
    if ((RUNS > 1)); then
        echo
        echo "Seconds in each round (round 1: ${TOOLS[*]} in this order, then alternating):"
        echo
        echo "| step | restic | coffer |"
        echo "|---|---:|---:|"
        for s in "${STEPS[@]}"; do
            r=ROUNDS_restic_$s c=ROUNDS_coffer_$s
            echo "| $(step_label "$s") | ${!r:-–} | ${!c:-–} |"
        done
    fi
    echo
    for t in restic coffer; do
        [[ -n ${FROM[$t]:-} ]] || continue
        echo "- $t repository: ${REPO_BYTES[$t]:-?} bytes ($(mib "${REPO_BYTES[$t]:-0}")) after three backups; restore: ${VERIFY[$t]:-?}"
    done
    if [[ -n ${FROM[coffer]:-} && -n ${FROM[restic]:-} ]]; then
        echo
        echo "Targets (coffer):"
        echo
        if failed coffer restic; then
            echo "- FAIL: a command failed, so no target is met (see the logs in $LOGS)"
        fi
        c=$(secs_of coffer first); r=$(secs_of restic first)
        awk -v r="$r" -v c="$c" 'BEGIN { printf "- first backup at least 3x restic'"'"'s throughput: %.2fx: %s\n", r / c, (r >= 3 * c) ? "PASS" : "FAIL" }'
        c=$(secs_of coffer rescan)
        awk -v c="$c" -v n="$DS_FILES" 'BEGIN { printf "- rescan of %d unchanged files in at most 0.5 s: %.2f s: %s\n", n, c, (c <= 0.5) ? "PASS" : "FAIL" }'
        c=$(secs_of coffer restore); r=$(secs_of restic restore)
        awk -v r="$r" -v c="$c" 'BEGIN { printf "- restore in at most 0.5x restic'"'"'s time: %.2fx: %s\n", c / r, (c <= 0.5 * r) ? "PASS" : "FAIL" }'
        max=0
        for s in "${STEPS[@]}"; do
            k=$(kib_of coffer "$s")
            if [[ $k =~ ^[0-9]+$ ]] && ((k > max)); then max=$k; fi
        done
        awk -v k="$max" 'BEGIN { printf "- peak RSS at most 256 MiB in every command: max %.0f MiB: %s\n", k / 1024, (k <= 262144) ? "PASS" : "FAIL" }'
    fi
} >"$OUT"

echo
cat "$OUT"
echo
echo "written to $OUT (logs in $LOGS)"
for t in "${TOOLS[@]}"; do
    [[ ${VERIFY[$t]:-} == identical* ]] || loud "$t restore verification: ${VERIFY[$t]:-not done}"
done
