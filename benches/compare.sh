#!/usr/bin/env bash
# libwarden against the hashing floor, a stat walk and AIDE, on one tree in
# one go. Installs what it lacks (b3sum with cargo, aide with apt-get),
# builds libwarden in release mode, then runs every tool RUNS times warm
# (round-robin, so background load hits all tools alike) and COLD_RUNS times
# cold, and prints medians, ratios and peak RSS as a Markdown report.
#
#   benches/compare.sh [TREE]          TREE defaults to /usr/lib
#   RUNS=5 COLD_RUNS=3 OUT=baselines/bench/results.md benches/compare.sh
#
# Cold means the tree's file pages were evicted with posix_fadvise(DONTNEED)
# (benches/evict.py) right before the run; directory and inode caches stay
# warm, and nothing else on the machine is dropped.
#
# `libwarden init` and `check` scan the host's library search paths (which
# on a merged-/usr system are /usr/lib plus a few small dirs), so their
# entry counts are printed next to the tree's; `libwarden bench` measures
# TREE itself. Wall time comes from the shell clock (date +%s%N), peak RSS
# from /usr/bin/time.
set -euo pipefail

TREE=${1:-/usr/lib}
RUNS=${RUNS:-5}
COLD_RUNS=${COLD_RUNS:-3}
OUT=${OUT:-}
COLD_IO_THREADS=${COLD_IO_THREADS:-16}
HERE=$(cd "$(dirname "$0")/.." && pwd)
CORES=$(nproc)
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "compare: $*" >&2; }

if ! command -v b3sum >/dev/null; then
    log "installing b3sum"
    cargo install --locked b3sum >&2
fi
if ! command -v aide >/dev/null; then
    log "installing aide"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq aide; } >&2 ||
        log "aide could not be installed; its rows will be missing"
fi
[ -x /usr/bin/time ] || { log "/usr/bin/time is needed (apt-get install time)"; exit 1; }

log "building libwarden (release)"
(cd "$HERE" && cargo build --release --quiet)
BIN="${CARGO_TARGET_DIR:-$HERE/target}/release/libwarden"

WORK=$(mktemp -d /tmp/libwarden-compare.XXXXXX)
# Keep the samples of a run that stopped half-way.
trap 'cp "$WORK/samples.tsv" /tmp/libwarden-compare.samples.tsv 2>/dev/null; rm -rf "$WORK"' EXIT
SAMPLES="$WORK/samples.tsv"
: >"$SAMPLES"

cat >"$WORK/aide.conf" <<EOF
database_out=file:$WORK/aide.db.new
gzip_dbout=no
report_url=stdout
Hash = p+i+n+u+g+s+m+c+sha256
$TREE Hash
EOF

evict() { python3 "$HERE/benches/evict.py" "$TREE" 2>/dev/null; }

# run LABEL MODE CMD...: one timed sample, appended to the samples file.
run() {
    local label=$1 mode=$2
    shift 2
    local t0 t1
    t0=$(date +%s%N)
    if ! /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err"; then
        # `check` exits 1-15 when the live system changed under the run
        # (a package installed meanwhile): findings, not a failure.
        local code
        code=$(sed -n 's/^Command exited with non-zero status \([0-9]*\)$/\1/p' "$WORK/rss")
        if ! [[ "$label" == "libwarden check"* && -n "$code" && "$code" -lt 16 ]]; then
            log "$label failed:"; cat "$WORK/rss" "$WORK/err" >&2; exit 1
        fi
    fi
    t1=$(date +%s%N)
    local rss
    rss=$(tail -n1 "$WORK/rss")
    printf '%s\t%s\t%s\t%s\n' "$label" "$mode" "$(( (t1 - t0) / 1000 ))" "$rss" >>"$SAMPLES"
}

B3="find '$TREE' -type f -print0 | xargs -0 -P$CORES -n 500 b3sum --no-mmap"
# Untimed clean-up before each timed command: every init starts afresh.
fresh() { rm -rf "$WORK/db" "$WORK/aide.db.new"; }
HAVE_AIDE=$(command -v aide >/dev/null && echo 1 || echo 0)

# The scan and the store alone: package provenance (on by default) adds an
# MD5 pass over every packaged library to init; both are measured.
printf '[provenance]\ndisabled = true\n' > "$WORK/noprov.toml"
NOPROV=(--config "$WORK/noprov.toml")

log "baseline for check"
"$BIN" -q --db "$WORK/db-check" init

warm_round() {
    run "b3sum -P$CORES" warm sh -c "$B3"
    run "find -printf (stat walk)" warm find "$TREE" -printf '%s %T@ %C@ %i\n'
    fresh; run "libwarden init" warm "$BIN" -q --db "$WORK/db" init
    fresh; run "libwarden init (provenance off)" warm "$BIN" -q "${NOPROV[@]}" --db "$WORK/db" init
    run "libwarden check (unchanged)" warm "$BIN" -q --db "$WORK/db-check" check
    run "libwarden bench --threads $CORES" warm "$BIN" -q --threads "$CORES" bench "$TREE"
    if [ "$HAVE_AIDE" = 1 ]; then
        fresh; run "aide --init --workers=$CORES" warm aide --init -c "$WORK/aide.conf" --workers="$CORES"
        fresh; run "aide --init" warm aide --init -c "$WORK/aide.conf"
    fi
}

cold_round() {
    evict; run "b3sum -P$CORES" cold sh -c "$B3"
    fresh; evict; run "libwarden init" cold "$BIN" -q --db "$WORK/db" init
    fresh; evict; run "libwarden init (provenance off)" cold "$BIN" -q "${NOPROV[@]}" --db "$WORK/db" init
    fresh; evict; run "libwarden init --io-threads $CORES (provenance off)" cold \
        "$BIN" -q "${NOPROV[@]}" --db "$WORK/db" --io-threads "$CORES" init
    evict; run "libwarden bench --threads $CORES" cold "$BIN" -q --threads "$CORES" bench "$TREE"
    evict; run "libwarden bench --threads $CORES --io-threads $COLD_IO_THREADS" cold \
        "$BIN" -q --threads "$CORES" --io-threads "$COLD_IO_THREADS" bench "$TREE"
    if [ "$HAVE_AIDE" = 1 ]; then
        fresh; evict; run "aide --init --workers=$CORES" cold aide --init -c "$WORK/aide.conf" --workers="$CORES"
    fi
}

log "warm-up pass"
sh -c "$B3" >/dev/null
for i in $(seq "$RUNS"); do log "warm round $i/$RUNS"; warm_round; done
for i in $(seq "$COLD_RUNS"); do log "cold round $i/$COLD_RUNS"; cold_round; done

# What was measured: the tree, libwarden's own view of it, the machine.
TREE_FILES=$(find "$TREE" -type f | wc -l)
TREE_ENTRIES=$(find "$TREE" | wc -l)
TREE_BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
LW_SUMMARY=$("$BIN" --db "$WORK/db-check" check 2>&1 >/dev/null | tail -n1 || true)
MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
AIDE_VERSION=$( (aide --version 2>&1 || true) | head -n1)

python3 - "$SAMPLES" <<EOF >"$WORK/report.md"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for label, mode, us, rss in rows:
    by.setdefault((label, mode), []).append((int(us) / 1e6, int(rss)))
med = {k: statistics.median(t for t, _ in v) for k, v in by.items()}
def ratio(a, b):
    return f"{med[a] / med[b]:.2f}x" if a in med and b in med else "n/a"
print("# libwarden throughput comparison")
print()
print("| | |")
print("|---|---|")
print("| date | $(date -u '+%Y-%m-%d %H:%M UTC') |")
print("| machine | $MODEL, $CORES cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM |")
print("| kernel | $(uname -sr) |")
print("| tree | $TREE: $TREE_ENTRIES entries, $TREE_FILES files, $TREE_BYTES bytes |")
print("| libwarden check sees | $LW_SUMMARY |")
print("| b3sum | $(b3sum --version) |")
print("| aide | $AIDE_VERSION |")
print("| runs | $RUNS warm, $COLD_RUNS cold; medians |")
if "$TREE" != "/usr/lib":
    print()
    print("Note: \`init\` and \`check\` scan the host's library search paths, not $TREE; their ratios compare different trees.")
print()
print("| command | cache | runs | median s | min s | max s | vs b3sum floor (medians) | (mins) | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|")
floor = {m: ("b3sum -P$CORES", m) for m in ("warm", "cold")}
for (label, mode), v in sorted(by.items(), key=lambda kv: (kv[0][1] != "warm", med[kv[0]])):
    ts = [t for t, _ in v]
    rss = max(r for _, r in v) / 1024
    fmin = min(t for t, _ in by[floor[mode]]) if floor[mode] in by else None
    rmin = f"{min(ts) / fmin:.2f}x" if fmin else "n/a"
    print(f"| \`{label}\` | {mode} | {len(v)} | {med[(label, mode)]:.3f} | {min(ts):.3f} | {max(ts):.3f} "
          f"| {ratio((label, mode), floor[mode])} | {rmin} | {rss:.1f} |")
print()
print(f"Load average at the end: {open('/proc/loadavg').read().split()[:3]} (other work on the machine widens the spread; the ratio of minimums is the least disturbed figure, the targets below use medians).")
print()
print("Targets (issue 3):")
w, c = "warm", "cold"
checks = [
    ("init (default: with provenance) <= 1.1x b3sum floor, warm", ("libwarden init", w), ("b3sum -P$CORES", w), 1.1),
    ("init, provenance off (scan + store) <= 1.1x b3sum floor, warm", ("libwarden init (provenance off)", w), ("b3sum -P$CORES", w), 1.1),
    ("bench (hash only) <= 1.0x b3sum floor, warm", ("libwarden bench --threads $CORES", w), ("b3sum -P$CORES", w), 1.0),
    ("init (default: with provenance) <= 0.8x b3sum floor, cold", ("libwarden init", c), ("b3sum -P$CORES", c), 0.8),
    ("init, provenance off, <= 0.8x b3sum floor, cold (4 files in flight per thread)", ("libwarden init (provenance off)", c), ("b3sum -P$CORES", c), 0.8),
    ("init --io-threads $CORES (one file per core), provenance off, <= 0.8x b3sum floor, cold", ("libwarden init --io-threads $CORES (provenance off)", c), ("b3sum -P$CORES", c), 0.8),
    ("unchanged check <= 1.5x the stat walk", ("libwarden check (unchanged)", w), ("find -printf (stat walk)", w), 1.5),
]
for name, a, b, limit in checks:
    if a in med and b in med:
        r = med[a] / med[b]
        print(f"- {name}: {r:.2f}x -> {'met' if r <= limit else 'MISSED by %.0f%%' % (100 * (r / limit - 1))}")
for a in [("aide --init --workers=$CORES", w), ("aide --init", w)]:
    if a in med:
        for ours in [("libwarden init", w), ("libwarden init (provenance off)", w)]:
            if ours in med:
                r = med[a] / med[ours]
                print(f"- \`{a[0]}\` / \`{ours[0]}\`, warm: {r:.1f}x slower (target >= 7x) -> {'met' if r >= 7 else 'MISSED'}")
rss = {k: max(r for _, r in v) / 1024 for k, v in by.items()}
for k in [("libwarden init", w), ("libwarden init (provenance off)", w), ("libwarden check (unchanged)", w)]:
    if k in rss:
        print(f"- peak RSS of {k[0]}: {rss[k]:.1f} MiB (target <= 64 MiB) -> {'met' if rss[k] <= 64 else 'MISSED'}")
EOF

cat "$WORK/report.md"
if [ -n "$OUT" ]; then
    mkdir -p "$(dirname "$OUT")"
    cp "$WORK/report.md" "$OUT"
    cp "$SAMPLES" "${OUT%.md}.samples.tsv"
    log "written to $OUT and ${OUT%.md}.samples.tsv"
fi
