#!/usr/bin/env python3
"""The Markdown report of benches/compare.sh, from its samples file (label,
cache, wall microseconds, peak RSS KiB per line) and what the script
exports in the environment. Run by compare.sh; not meant to be run alone."""
import json
import os
import statistics

E = os.environ
rows = [l.rstrip("\n").split("\t") for l in open(E["SAMPLES"]) if l.strip()]
by = {}
for label, mode, us, rss in rows:
    by.setdefault((label, mode), []).append((int(us) / 1e6, int(rss)))
med = {k: statistics.median(t for t, _ in v) for k, v in by.items()}
# The largest resident set of any run: the conservative figure.
rss = {k: max(r for _, r in v) / 1024 for k, v in by.items()}

W, C = "warm", "cold"
FLOOR, WALK, WALK_X = E["FLOOR"], E["WALK"], E["WALK_X"]
INIT, INIT_NP, CHECK, CHECK_X = E["INIT"], E["INIT_NP"], E["CHECK"], E["CHECK_X"]
BENCH, AIDE_W = E["BENCH"], E["AIDE_W"]


def cell(k, with_rss=True):
    if k not in med:
        return "not measured"
    s = f"{med[k]:.3f} s"
    return f"{s}, {rss[k]:.1f} MiB" if with_rss else s


def verdict(ok):
    return "met" if ok else "**missed**"


print("# libwarden against the hashing floor, the stat walk and AIDE")
print()
print("| | |")
print("|---|---|")
print(f"| date | {E['DATE']} |")
print(f"| machine | {E['MACHINE']} |")
print(f"| kernel | {E['KERNEL']} |")
print(f"| load average at the end | {' '.join(open('/proc/loadavg').read().split()[:3])} |")
print(f"| files | what `init` scans: {E['DIRS_TEXT']} ({E['TREE_ENTRIES']} entries) and {E['LOADER_COUNT']} loader files: {E['TREE_FILES']} regular files, {int(E['TREE_BYTES']) / 1e9:.2f} GB |")
print(f"| libwarden check sees | {E['LW_SUMMARY']} |")
print(f"| check after {E['CHANGED']} changed libraries sees | {E['LW_CHANGED']} |")
print(f"| b3sum | {E['B3_VERSION']} |")
print(f"| aide | {E['AIDE_VERSION'] if E['HAVE_AIDE'] == '1' else 'not installed'} |")
print(f"| runs | {E['RUNS']} warm, {E['COLD_RUNS']} cold, round-robin; medians; peak RSS is the largest of the runs |")
print()
print("## The issue's table")
print()
print("| | libwarden | reference | ratio | goal | |")
print("|---|---|---|---|---|---|")


def ratio_row(name, ours, ref, limit, ref_name=None, invert=False):
    """A row: ours/ref against `limit` (or ref/ours >= limit with invert)."""
    if ours in med and ref in med:
        if invert:
            r = med[ref] / med[ours]
            got, ok, goal = f"{r:.2f}x slower", r >= limit, f">= {limit}x slower"
        else:
            r = med[ours] / med[ref]
            got, ok, goal = f"{r:.2f}x", r <= limit, f"<= {limit}x"
        res = verdict(ok)
    else:
        got, res = "n/a", "not measured"
        goal = f">= {limit}x slower" if invert else f"<= {limit}x"
    ref_cell = f"{ref_name or ref[0]} {cell(ref, False)}"
    print(f"| {name} | {cell(ours)} | {ref_cell} | {got} | {goal} | {res} |")


ratio_row("`init`, default (provenance on), warm", (INIT, W), (FLOOR, W), 1.5, "b3sum floor")
ratio_row("`init`, default, cold", (INIT, C), (FLOOR, C), 0.8, "b3sum floor")
ratio_row("`init`, provenance off, warm", (INIT_NP, W), (FLOOR, W), 0.95, "b3sum floor")
ratio_row("`init`, provenance off, cold", (INIT_NP, C), (FLOOR, C), 0.8, "b3sum floor")
ratio_row("`check`, unchanged", (CHECK, W), (WALK, W), 1.2, "`find -printf`")
ratio_row(f"`check`, {E['CHANGED']} changed libraries", (CHECK_X, W), (WALK_X, W), 1.5,
          "`find -printf` (same dirs)")
ratio_row(f"AIDE `--workers={E['CORES']}` sha256 vs default `init`, warm", (INIT, W), (AIDE_W, W), 6,
          "AIDE", invert=True)

print()
print("Peak RSS:")
print()
for k, limit in [((CHECK, W), 40), ((INIT, W), 48), ((INIT_NP, W), None), ((CHECK_X, W), None)]:
    if k in rss:
        goal = f" (goal <= {limit} MiB: {verdict(rss[k] <= limit)})" if limit else ""
        print(f"- `{k[0]}`: {rss[k]:.1f} MiB{goal}")
print(f"- `{BENCH} {E['BENCH_TREE']}`, as the bench itself reports it (VmHWM of the pass): "
      f"{E['BENCH_RSS'] + ' MiB' if E['BENCH_RSS'] else 'not reported by this build'}")
try:
    g = json.loads(open(E["GROWTH"]).read())["growth"]
    pr = g.get("peak_rss_bytes")
    mem = (f"peak RSS {pr[0] / 2**20:.1f} -> {pr[1] / 2**20:.1f} MiB, "
           f"{g['peak_rss_bytes_per_10k_entries'] / 2**20:+.2f} MiB per 10k entries"
           if pr else "peak RSS not reported")
    print(f"- growth (`bench --generate DIR --scale {E['GEN_SCALE']}`, median of 3, "
          f"{E['CORES']} threads): {g['entries'][0]} -> {g['entries'][1]} entries: "
          f"wall {g['wall_s'][0]:.3f} -> {g['wall_s'][1]:.3f} s, "
          f"{g['wall_s_per_10k_entries']:+.3f} s per 10k entries; {mem}")
except (OSError, ValueError, KeyError, TypeError, IndexError):
    print("- growth per 10k entries: not measured (this build's `bench --generate` reports no growth)")
print()
print(f"MD5 lanes (`libwarden bench`): {E['MD5_LINE']}")
print()
print("## Every command")
print()
print("| command | cache | runs | median s | min s | max s | vs b3sum floor (medians) | (mins) | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|")
for (label, mode), v in sorted(by.items(), key=lambda kv: (kv[0][1] != W, med[kv[0]])):
    ts = [t for t, _ in v]
    f = (FLOOR, mode)
    r = f"{med[(label, mode)] / med[f]:.2f}x" if f in med else "n/a"
    rmin = f"{min(ts) / min(t for t, _ in by[f]):.2f}x" if f in by else "n/a"
    print(f"| `{label}` | {mode} | {len(v)} | {med[(label, mode)]:.3f} | {min(ts):.3f} | {max(ts):.3f} "
          f"| {r} | {rmin} | {rss[(label, mode)]:.1f} |")
print()
print("Other work on the machine widens the spread; the ratio of minimums is the "
      "least disturbed figure, the goals use medians.")
