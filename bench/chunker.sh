#!/usr/bin/env bash
# Chooses the chunker's min/avg/max sizes by measurement: for each candidate, back up the data
# set of bench/files.sh, then insert 64 bytes in the middle of every 20th file larger than
# 256 KiB (the case content-defined chunking exists for), back up again, and report the stored
# size, the chunk count (which sets the index's memory) and what the second backup added.
# Usage: bench/chunker.sh   (after bench/files.sh has built bench/data/rust-sysroot)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=bench/data/rust-sysroot
[ -d "$DATA" ] || { echo "run bench/files.sh first (it builds $DATA)" >&2; exit 1; }
BIN=${COFFER_BIN:-target/release/coffer}
[ -x "$BIN" ] || cargo build --release -p coffer-cli
WORK=$(mktemp -d /tmp/coffer-chunker.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export COFFER_PASSWORD=bench COFFER_KDF_PARAMS=1024,1,1
mapfile -t victims < <(find "$DATA" -type f -size +256k | sort | awk "NR % 4 == 0")
cp --parents "${victims[@]}" "$WORK/" 2>/dev/null || { mkdir -p "$WORK/orig"; for f in "${victims[@]}"; do mkdir -p "$WORK/orig/$(dirname "$f")"; cp -p "$f" "$WORK/orig/$f"; done; }
modify() { for f in "${victims[@]}"; do python3 - "$f" <<'PY'
import os, sys
p = sys.argv[1]; st = os.stat(p)
with open(p, 'r+b') as fh:
    data = fh.read(); mid = len(data) // 2
    fh.seek(0); fh.write(data[:mid] + b'coffer-chunker-benchmark-insert-64-bytes-of-new-content-here!!' + data[mid:])
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
PY
done; }
restore() { for f in "${victims[@]}"; do if [ -f "$WORK/$f" ]; then cp -p "$WORK/$f" "$f"; else cp -p "$WORK/orig/$f" "$f"; fi; done; }
echo "data set: $(find "$DATA" -type f | wc -l) files, $(du -sb "$DATA" | cut -f1) bytes; ${#victims[@]} files get a 64-byte insertion"
printf '| min/avg/max | chunks | stored after 1st | 1st backup CPU s | added by 2nd | 2nd / changed bytes |\n|---|---:|---:|---:|---:|---:|\n'
changed=$(du -cb "${victims[@]}" | tail -1 | cut -f1)
for p in 131072,524288,2097152 262144,1048576,4194304 524288,1048576,4194304 524288,1048576,8388608 1048576,2097152,8388608; do
  repo="$WORK/repo"; rm -rf "$repo"
  "$BIN" -q --repo "$repo" init --chunker "$p"
  cpu=$( { /usr/bin/time -f '%U %S' "$BIN" -q --repo "$repo" backup "$DATA" --type full; } 2>&1 | awk '{print $1+$2}')
  chunks=$("$BIN" --repo "$repo" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["blobs"])')
  stored=$(du -sb "$repo" | cut -f1)
  modify
  added=$("$BIN" --repo "$repo" --json backup "$DATA" --type full | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_added"])')
  restore
  printf '| %s | %s | %s | %s | %s | %.3f |\n' "$(echo "$p" | awk -F, '{printf "%dK/%dK/%dK", $1/1024, $2/1024, $3/1024}')" "$chunks" "$stored" "$cpu" "$added" "$(echo "$added / $changed" | bc -l)"
done
