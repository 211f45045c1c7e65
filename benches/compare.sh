#!/usr/bin/env bash
# libwarden against the hashing floor, a stat walk and AIDE, on the files
# `libwarden init` scans, in one go: every row of the speed issue's table
# side by side, with ratios, peak RSS and the goals met or missed.
#
#   benches/compare.sh
#   RUNS=5 COLD_RUNS=3 OUT=baselines/bench/results.md benches/compare.sh
#
# Installs what it lacks (b3sum with cargo, aide and GNU time with apt-get),
# builds libwarden in release mode, then runs every command RUNS times warm
# and COLD_RUNS times cold, round-robin (one of each per round, so load
# from elsewhere on the machine falls on all of them alike), and prints
# medians as a Markdown report.
#
# The rows:
# - `init` (default: package provenance on) and `init` with provenance off,
#   against the b3sum floor: `b3sum --no-mmap` through `xargs -P<cores>
#   -n 500` over the regular files below the directories `init` scans
#   (from `libwarden paths`) plus its loader files; warm and cold;
# - an unchanged `check` against `find <the same dirs> -printf '%s %T@ %C@
#   %i\n'`;
# - a `check` after 100 changed libraries: 100 real libraries are copied
#   into a directory under the run's temporary dir, monitored through the
#   config's `paths`, baselined, then each one gets a byte appended; the
#   reference is the same `find` over the host dirs plus that directory.
#   The host's libraries are never modified;
# - AIDE (`aide --init --workers=<cores>`, sha256 plus the usual
#   attributes) over the same dirs, against the default `init`;
# - `libwarden bench` over the largest dir: its MD5 lane line (`md5:`,
#   single-stream vs multi-buffer) when this build prints one, and its own
#   peak RSS; `bench --generate` at GEN_SCALE (and half of it) for the
#   growth of time and peak RSS per 10k extra entries.
#
# Cold means the files' pages were evicted with posix_fadvise(DONTNEED)
# (benches/evict.py) right before the run; directory and inode caches stay
# warm, and nothing else on the machine is dropped. Wall time comes from
# the shell clock (date +%s%N), peak RSS from GNU time (%M: the largest
# resident set of the command or any process it waited for).
#
# Knobs: RUNS (5), COLD_RUNS (3), GEN_SCALE (1.0: about 1.3 GB plus 0.65 GB
# written under the temporary dir, removed after use), EXTRA=1 adds the
# older rows (serial AIDE, cold AIDE, cold bench, --io-threads variants),
# OUT=FILE also writes the report and its samples (FILE.samples.tsv),
# LIBWARDEN=PATH measures that binary instead of building one.
set -euo pipefail

RUNS=${RUNS:-5}
COLD_RUNS=${COLD_RUNS:-3}
GEN_SCALE=${GEN_SCALE:-1.0}
EXTRA=${EXTRA:-0}
OUT=${OUT:-}
COLD_IO_THREADS=${COLD_IO_THREADS:-16}
HERE=$(cd "$(dirname "$0")/.." && pwd)
CORES=$(nproc)
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "compare: $*" >&2; }

if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
apt_install() {
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"; } >&2
}
if ! command -v b3sum >/dev/null; then
    log "installing b3sum"
    cargo install --locked b3sum >&2
fi
if ! command -v aide >/dev/null; then
    log "installing aide"
    apt_install aide || log "aide could not be installed; its rows will be missing"
fi
if ! [ -x /usr/bin/time ]; then
    log "installing GNU time"
    apt_install time || { log "/usr/bin/time is needed (apt-get install time)"; exit 1; }
fi

if [ -n "${LIBWARDEN:-}" ]; then
    BIN=$LIBWARDEN
else
    log "building libwarden (release)"
    (cd "$HERE" && cargo build --release --quiet)
    BIN="${CARGO_TARGET_DIR:-$HERE/target}/release/libwarden"
fi

WORK=$(mktemp -d /tmp/libwarden-compare.XXXXXX)
# Keep the samples of a run that stopped half-way.
trap 'cp "$WORK/samples.tsv" /tmp/libwarden-compare.samples.tsv 2>/dev/null; rm -rf "$WORK"' EXIT
SAMPLES="$WORK/samples.tsv"
: >"$SAMPLES"

# What `init` scans: the recursive search dirs not inside another one, and
# the loader files (from the same resolution init uses).
paths_of() { # CONFIG-ARGS... -> "d PATH" / "f PATH" lines
    "$BIN" "$@" --format json paths | python3 -c '
import json, sys
for line in sys.stdin:
    p = json.loads(line)
    if not p.get("exists"):
        continue
    if p.get("kind") == "dir" and p.get("recursive") and not p.get("covered_by"):
        print("d", p["path"])
    elif p.get("kind") == "file":
        print("f", p["path"])
'
}
mapfile -t DIRS < <(paths_of | sed -n 's/^d //p')
mapfile -t LOADER_FILES < <(paths_of | sed -n 's/^f //p')
[ ${#DIRS[@]} -gt 0 ] || { log "libwarden paths lists no directory"; exit 1; }
log "scanned dirs: ${DIRS[*]}"

# The 100 changed libraries live in a monitored dir of our own.
EXTRA_DIR="$WORK/extra-libs"
mkdir -p "$EXTRA_DIR"
# Numbered, since libraries of the same name live in several dirs. (sed
# reads to the end: `head` would close the pipe early, and sort's SIGPIPE
# end the script under pipefail once the list outgrows a pipe's buffer.)
find "${DIRS[@]}" -type f -name 'lib*.so*' -size +16k 2>/dev/null | sort | sed -n '1,100p' |
    { n=0; while read -r f; do n=$((n + 1)); cp "$f" "$EXTRA_DIR/$n-${f##*/}"; done; }
CHANGED=$(find "$EXTRA_DIR" -type f | wc -l)
printf 'paths = ["%s"]\n' "$EXTRA_DIR" >"$WORK/extra.toml"
EXTRA_CFG=(--config "$WORK/extra.toml")

# The floor and the walks as scripts, so no word of a path is re-split.
{
    echo '#!/bin/sh'
    printf 'find'; printf ' %q' "${DIRS[@]}"; printf ' -type f -print0\n'
    for f in "${LOADER_FILES[@]}"; do printf "[ -f %q ] && printf '%%s\\\\0' %q\n" "$f" "$f"; done
} >"$WORK/files.sh"
printf '#!/bin/sh\n{ . %q; } | xargs -0 -P%s -n 500 b3sum --no-mmap\n' "$WORK/files.sh" "$CORES" >"$WORK/floor.sh"
printf '#!/bin/sh\nexec find' >"$WORK/walk.sh"
printf ' %q' "${DIRS[@]}" >>"$WORK/walk.sh"
printf " -printf '%%s %%T@ %%C@ %%i\\\\n'\n" >>"$WORK/walk.sh"
sed "s|^exec find|exec find $(printf '%q' "$EXTRA_DIR")|" "$WORK/walk.sh" >"$WORK/walk-extra.sh"
chmod +x "$WORK"/*.sh

{
    echo "database_out=file:$WORK/aide.db.new"
    echo "gzip_dbout=no"
    echo "report_url=stdout"
    echo "Hash = p+i+n+u+g+s+m+c+sha256"
    for d in "${DIRS[@]}"; do echo "$d Hash"; done
    for f in "${LOADER_FILES[@]}"; do echo "$f\$ Hash"; done
} >"$WORK/aide.conf"

evict() {
    python3 "$HERE/benches/evict.py" "${DIRS[@]}" "${LOADER_FILES[@]}" 2>/dev/null
}

# run LABEL MODE CMD...: one timed sample, appended to the samples file;
# the command's stdout is kept in $WORK/stdout.
run() {
    local label=$1 mode=$2
    shift 2
    local t0 t1
    t0=$(date +%s%N)
    if ! /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >"$WORK/stdout" 2>"$WORK/err"; then
        # libwarden exits 1-15 for findings (a package installed meanwhile,
        # the 100 changed libraries): findings, not a failure.
        local code
        code=$(sed -n 's/^Command exited with non-zero status \([0-9]*\)$/\1/p' "$WORK/rss")
        if ! [[ "$label" == "libwarden "* && -n "$code" && "$code" -lt 16 ]]; then
            log "$label failed:"; cat "$WORK/rss" "$WORK/err" >&2; exit 1
        fi
    fi
    t1=$(date +%s%N)
    local rss
    rss=$(tail -n1 "$WORK/rss")
    printf '%s\t%s\t%s\t%s\n' "$label" "$mode" "$(( (t1 - t0) / 1000 ))" "$rss" >>"$SAMPLES"
}

# Untimed clean-up before each timed command: every init starts afresh.
fresh() { rm -rf "$WORK/db" "$WORK/aide.db.new"; }
HAVE_AIDE=$(command -v aide >/dev/null && echo 1 || echo 0)

# The scan and the store alone: package provenance (on by default) adds
# MD5 verification of every packaged library to init; both are measured.
printf '[provenance]\ndisabled = true\n' >"$WORK/noprov.toml"
NOPROV=(--config "$WORK/noprov.toml")
BENCH_TREE=${DIRS[0]}

log "baselines for the two checks"
"$BIN" -q --db "$WORK/db-check" init
"$BIN" -q "${EXTRA_CFG[@]}" --db "$WORK/db-changed" init
# Same size class, different content: a byte appended to each copy.
find "$EXTRA_DIR" -type f -exec sh -c 'for f; do printf "\0" >>"$f"; done' sh {} +

FLOOR="b3sum -P$CORES"
WALK="find -printf (stat walk)"
WALK_X="find -printf (stat walk + changed dir)"
INIT="libwarden init"
INIT_NP="libwarden init (provenance off)"
CHECK="libwarden check (unchanged)"
CHECK_X="libwarden check ($CHANGED changed libraries)"
BENCH="libwarden bench --threads $CORES"
AIDE_W="aide --init --workers=$CORES"

# Untimed, before each round: what changed on the host since the baselines
# were made (a package upgrade, another tool's hard links changing every
# ctime) is accepted, so that "unchanged" stays unchanged and the changed
# run changes the 100 libraries only. The changed dir itself is left out.
resync() {
    "$BIN" -q --db "$WORK/db-check" update >/dev/null 2>&1 || true
    "$BIN" -q "${EXTRA_CFG[@]}" --db "$WORK/db-changed" update \
        "${DIRS[@]}" "${LOADER_FILES[@]}" >/dev/null 2>&1 || true
}

warm_round() {
    resync
    run "$FLOOR" warm "$WORK/floor.sh"
    fresh; run "$INIT" warm "$BIN" -q --db "$WORK/db" init
    run "$WALK" warm "$WORK/walk.sh"
    run "$CHECK" warm "$BIN" -q --db "$WORK/db-check" check
    fresh; run "$INIT_NP" warm "$BIN" -q "${NOPROV[@]}" --db "$WORK/db" init
    run "$WALK_X" warm "$WORK/walk-extra.sh"
    run "$CHECK_X" warm "$BIN" -q "${EXTRA_CFG[@]}" --db "$WORK/db-changed" check
    run "$BENCH" warm "$BIN" -q --threads "$CORES" bench "$BENCH_TREE"
    # Its md5: line may come on either stream.
    cat "$WORK/stdout" "$WORK/err" >"$WORK/bench.out"
    if [ "$HAVE_AIDE" = 1 ]; then
        fresh; run "$AIDE_W" warm aide --init -c "$WORK/aide.conf" --workers="$CORES"
        if [ "$EXTRA" = 1 ]; then
            fresh; run "aide --init" warm aide --init -c "$WORK/aide.conf"
        fi
    fi
}

cold_round() {
    evict; run "$FLOOR" cold "$WORK/floor.sh"
    fresh; evict; run "$INIT" cold "$BIN" -q --db "$WORK/db" init
    fresh; evict; run "$INIT_NP" cold "$BIN" -q "${NOPROV[@]}" --db "$WORK/db" init
    if [ "$EXTRA" = 1 ]; then
        fresh; evict; run "libwarden init --io-threads $CORES (provenance off)" cold \
            "$BIN" -q "${NOPROV[@]}" --db "$WORK/db" --io-threads "$CORES" init
        evict; run "$BENCH" cold "$BIN" -q --threads "$CORES" bench "$BENCH_TREE"
        evict; run "$BENCH --io-threads $COLD_IO_THREADS" cold \
            "$BIN" -q --threads "$CORES" --io-threads "$COLD_IO_THREADS" bench "$BENCH_TREE"
        if [ "$HAVE_AIDE" = 1 ]; then
            fresh; evict; run "$AIDE_W" cold aide --init -c "$WORK/aide.conf" --workers="$CORES"
        fi
    fi
}

log "warm-up pass"
"$WORK/floor.sh" >/dev/null
for i in $(seq "$RUNS"); do log "warm round $i/$RUNS"; warm_round; done
for i in $(seq "$COLD_RUNS"); do log "cold round $i/$COLD_RUNS"; cold_round; done

log "bench --generate at scale $GEN_SCALE (growth per 10k entries)"
"$BIN" -q --format json --threads "$CORES" bench --generate "$WORK/gen" --scale "$GEN_SCALE" --runs 3 |
    tail -n1 >"$WORK/growth.json"
rm -rf "$WORK/gen" "$WORK/gen.half"

# What was measured: the files, libwarden's own view of them, the machine.
TREE_FILES=$("$WORK/files.sh" | tr -cd '\0' | wc -c)
TREE_BYTES=$("$WORK/files.sh" | xargs -0 stat -c %s | awk '{s+=$1} END {printf "%.0f", s}')
TREE_ENTRIES=$(find "${DIRS[@]}" | wc -l)
LW_SUMMARY=$("$BIN" --db "$WORK/db-check" check 2>&1 >/dev/null | tail -n1 || true)
LW_CHANGED=$("$BIN" "${EXTRA_CFG[@]}" --db "$WORK/db-changed" check 2>&1 >/dev/null | tail -n1 || true)
MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
AIDE_VERSION=$( (aide --version 2>&1 || true) | head -n1)
MD5_LINE=$(grep -m1 '^md5:' "$WORK/bench.out" || echo "not measured (this build's bench prints no md5: line)")
BENCH_RSS=$(sed -n '/peak RSS MiB/{n;p}' "$WORK/bench.out" | awk '{print $6}')

export SAMPLES DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" CORES RUNS COLD_RUNS GEN_SCALE \
    MACHINE="$MODEL, $CORES cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM" \
    KERNEL="$(uname -sr)" DIRS_TEXT="${DIRS[*]}" LOADER_COUNT=${#LOADER_FILES[@]} \
    TREE_ENTRIES TREE_FILES TREE_BYTES LW_SUMMARY LW_CHANGED CHANGED B3_VERSION="$(b3sum --version)" \
    AIDE_VERSION MD5_LINE BENCH_RSS BENCH_TREE GROWTH="$WORK/growth.json" \
    FLOOR WALK WALK_X INIT INIT_NP CHECK CHECK_X BENCH AIDE_W HAVE_AIDE
python3 "$HERE/benches/compare_report.py" >"$WORK/report.md"

cat "$WORK/report.md"
if [ -n "$OUT" ]; then
    mkdir -p "$(dirname "$OUT")"
    # An earlier report in OUT is kept below the new one, its headings
    # moved two levels down; each carries its own date.
    if [ -s "$OUT" ]; then
        {
            echo
            echo "## Earlier results"
            echo
            echo "Older runs of this script, newest first; each says its date, and its goals are those of its time."
            echo
            sed -E 's/^(#+) /\1## /' "$OUT"
        } >>"$WORK/report.md"
    fi
    cp "$WORK/report.md" "$OUT"
    cp "$SAMPLES" "${OUT%.md}.samples.tsv"
    log "written to $OUT and ${OUT%.md}.samples.tsv"
fi
