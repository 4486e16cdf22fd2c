"""bench/cutover_plot.py DIR OLD NEW CLIENTS: the data of bench/cutover --plot.

Reads, in DIR, "commits" (one line per commit the clients saw acknowledged: epoch
seconds and side, from bench/lib.sh's load_commits_by_side) and "steps" (one line per
step of each succeeded attempt, from both clusters' cutover_history: side|attempt|
fenced_at|peer_writable_at|step|started_at|duration, epoch seconds).  Expects exactly
two attempts, the cutover and its rollback.  Writes, for bench/cutover_plot.gp:

  overview.dat    seconds from the cutover's first step, commits per 10 ms on old, new
  zoomN.dat       the same around attempt N (1 cutover, 2 rollback), in milliseconds
                  from that attempt's first step
  stepsN.dat      its steps: row, start ms, end ms, "name (duration)"
  vars.gp         ranges, the blackouts, the clients' return (first commit on the
                  new primary), titles
"""

import sys

BIN = 0.010  # seconds


def main():
    work, old, new, clients = sys.argv[1:]
    commits = []
    for line in open(f"{work}/commits"):
        t, side = line.split()
        commits.append((float(t), side))

    attempts = {}
    for line in open(f"{work}/steps"):
        if not line.strip():
            continue
        side, attempt, fenced, writable, step, start, duration = line.rstrip("\n").split("|")
        a = attempts.setdefault((side, attempt), {
            "side": side, "fenced": float(fenced), "writable": float(writable), "steps": []})
        a["steps"].append((step, float(start), float(duration)))
    cuts = sorted(attempts.values(), key=lambda a: a["steps"][0][1])
    if len(cuts) != 2 or not commits:
        sys.exit(f"cutover_plot: expected a cutover, its rollback and commits; "
                 f"found {len(cuts)} attempts and {len(commits)} commits")

    origin = cuts[0]["steps"][0][1]
    name = {"old": f"old ({old})", "new": f"new ({new})"}

    def histogram(path, lo, hi, zero, scale):
        """commits per BIN in [lo, hi), times as (t - zero) * scale"""
        n = int(round((hi - lo) / BIN))
        counts = {"old": [0] * n, "new": [0] * n}
        for t, side in commits:
            i = int((t - lo) // BIN)
            if 0 <= i < n and side in counts:
                counts[side][i] += 1
        with open(path, "w") as f:
            for i in range(n):
                f.write(f"{(lo + i * BIN - zero) * scale:.3f}\t"
                        f"{counts['old'][i]}\t{counts['new'][i]}\n")

    lo = origin - 1.0
    hi = cuts[1]["writable"] + 2.0
    hi = min(hi, commits[-1][0] + BIN)
    histogram(f"{work}/overview.dat", lo, hi, origin, 1)
    v = [f"ov_lo = {lo - origin:.3f}", f"ov_hi = {hi - origin:.3f}",
         f"old_title = '{name['old']}'", f"new_title = '{name['new']}'",
         f"main_title = 'upgrade_assist cutover and rollback under {clients} pgbench clients: "
         f"commits acknowledged per 10 ms'"]

    for i, c in enumerate(cuts, 1):
        start = c["steps"][0][1]
        blackout = c["writable"] - c["fenced"]
        other = "new" if c["side"] == "old" else "old"
        # the clients' return: the first commit on the new primary
        back = next((t for t, side in commits if side == other and t > c["fenced"]),
                    c["writable"])
        zlo, zhi = start - 0.15, max(c["writable"], back) + 0.3
        histogram(f"{work}/zoom{i}.dat", zlo, zhi, start, 1000)
        with open(f"{work}/steps{i}.dat", "w") as f:
            for row, (step, s, d) in enumerate(c["steps"], 1):
                b = (s - start) * 1000
                f.write(f'{row}\t{b:.3f}\t{b + d * 1000:.3f}\t"{step} ({d * 1000:.0f} ms)"\n')
        what = "cutover" if i == 1 else "rollback"
        v += [f"z{i}_lo = {(zlo - start) * 1000:.1f}", f"z{i}_hi = {(zhi - start) * 1000:.1f}",
              f"b{i}_lo = {c['fenced'] - origin:.3f}", f"b{i}_hi = {c['writable'] - origin:.3f}",
              f"f{i} = {(c['fenced'] - start) * 1000:.1f}",
              f"w{i} = {(c['writable'] - start) * 1000:.1f}",
              f"r{i} = {(back - start) * 1000:.1f}",
              f"n{i} = {len(c['steps'])}",
              f"z{i}_title = '{what}: {name[c['side']]} -> {name[other]}, "
              f"blackout {blackout * 1000:.0f} ms'"]
    with open(f"{work}/vars.gp", "w") as f:
        f.write("\n".join(v) + "\n")


main()
