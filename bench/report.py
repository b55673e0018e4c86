"""Turns bench/run.sh's raw rows into the Markdown report (stdout). Called by run.sh only."""

import argparse
import statistics

LABELS = {
    "dropship": "dropship upload --json",
    "dropship-flat": "dropship upload --json, flat keys `{prefix}/{uuid}-{name}`",
    "dropship-companion": "dropship upload --api companion --json, Uppy Companion",
    "curl": "curl -T, presigned, SHA-256 signed",
    "curl-nosum": "curl -T, presigned, no checksum",
    "s5cmd": "s5cmd cp",
    "aws": "aws s3 cp",
    "rclone": "rclone copy",
}
MIB = 1024 * 1024


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    for name in ("runs", "machine", "versions", "sets", "stamp", "scale", "repeat", "network", "net"):
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()

    runs = []
    for row in read_tsv(args.runs):
        s, tool, rep, ok, wall, user, sys_, rss, server, backend, size, note = (row + [""] * 12)[:12]
        runs.append({
            "set": s, "tool": tool, "rep": int(rep), "ok": ok == "yes", "wall": float(wall),
            "cpu": float(user) + float(sys_), "rss": int(rss) / 1024, "server": float(server),
            "backend": float(backend) if backend else None, "bytes": int(size), "note": note,
        })
    sets = read_tsv(args.sets)
    out = []
    p = out.append

    p(f"# Upload benchmark {args.stamp} ({args.net})")
    p("")
    p(f"Scale `{args.scale}`, {args.repeat} run(s) per tool"
      + (" (medians; each column on its own)" if int(args.repeat) > 1 else "")
      + ". One SeaweedFS for the whole run, the same files for every tool, one tool at a time, "
        "each into its own key prefix. Client CPU = user+sys of the tool and its children (GNU time); "
        "server CPU = the SeaweedFS process tree over the run (/proc); backend CPU = the signing backend "
        "(dropship-backend, or Companion for the companion row; only the tools that use one).")
    p("")
    p("## Network")
    p("")
    p("| | |")
    p("|---|---|")
    for k, v in read_tsv(args.network):
        p(f"| {k} | {v} |")
    p("")

    medians = {}
    for s, label in sets:
        p(f"## `{s}`: {label}")
        p("")
        p("| tool | wall s | MiB/s | client CPU s | peak RSS MiB | server CPU s | backend CPU s | ok |")
        p("|---|---:|---:|---:|---:|---:|---:|---|")
        tools = []
        for r in runs:
            if r["set"] == s and r["tool"] not in tools:
                tools.append(r["tool"])
        for tool in tools:
            rs = [r for r in runs if r["set"] == s and r["tool"] == tool]
            good = [r for r in rs if r["ok"]] or rs
            m = {k: median([r[k] for r in good if r[k] is not None]) for k in ("wall", "cpu", "rss", "server", "backend")}
            m["mibs"] = median([r["bytes"] / MIB / r["wall"] for r in good])
            m["all_ok"] = all(r["ok"] for r in rs)
            medians[(s, tool)] = m
            ok = "yes" if m["all_ok"] else f"**{sum(r['ok'] for r in rs)}/{len(rs)}**"
            p(f"| {LABELS.get(tool, tool)} | {fmt(m['wall'], 2)} | {fmt(m['mibs'], 1)} | {fmt(m['cpu'], 2)} "
              f"| {fmt(m['rss'], 0)} | {fmt(m['server'], 2)} | {fmt(m['backend'], 2)} | {ok} |")
        p("")

    summary = []
    d, c = medians.get(("1g", "dropship")), medians.get(("1g", "curl"))
    if d and c:
        summary.append(f"1g: dropship {d['mibs']:.1f} MiB/s = {d['mibs'] / c['mibs']:.0%} of curl's "
                       f"{c['mibs']:.1f} MiB/s")
    for s in ("small", "20x50m"):
        s5 = medians.get((s, "s5cmd"))
        for tool in ("dropship", "dropship-flat", "dropship-companion"):
            d = medians.get((s, tool))
            if d and s5:
                summary.append(f"{s}: {tool} {d['wall']:.2f} s = {d['wall'] / s5['wall']:.2f}× s5cmd's "
                               f"{s5['wall']:.2f} s wall")
    if summary:
        p("**Summary:** " + "; ".join(summary) + ".")
        p("")

    failed = [r for r in runs if not r["ok"]]
    if failed:
        p("## Failures")
        p("")
        for r in failed:
            p(f"- `{r['tool']}` on `{r['set']}`, run {r['rep']}: {r['note']}")
        p("")

    if int(args.repeat) > 1:
        p("<details><summary>Every run</summary>")
        p("")
        p("| set | tool | run | wall s | MiB/s | client CPU s | peak RSS MiB | server CPU s | backend CPU s | ok |")
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in runs:
            p(f"| {r['set']} | {r['tool']} | {r['rep']} | {r['wall']:.2f} | {r['bytes'] / MIB / r['wall']:.1f} "
              f"| {r['cpu']:.2f} | {r['rss']:.0f} | {r['server']:.2f} | {fmt(r['backend'], 2)} "
              f"| {'yes' if r['ok'] else 'no'} |")
        p("")
        p("</details>")
        p("")

    p("## Machine and versions")
    p("")
    p("| | |")
    p("|---|---|")
    for k, v in read_tsv(args.machine) + read_tsv(args.versions):
        p(f"| {k} | {v} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
