#!/usr/bin/env python3
"""Sets benchmark reports of several PostgreSQL versions (bench/run.py's JSON, measured by one
scripts/bench.sh run) side by side, each figure with its ratio to the first version's."""

import argparse
import re
from pathlib import Path
import json

# The 16+ settings path must not make the fallback's per-row cost worse than on 15 by more than
# this (the versions issue's bound), measured in the same benchmark run.
FALLBACK_BOUND = 1.2
FALLBACK_ROW = "[fallback] auth.user_id()"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("reports", nargs="+")
    args = ap.parse_args()
    versions, headers, values, units, order = [], [], {}, {}, []
    for path in args.reports:
        version = re.search(r"-pg(\d+)\.json$", path).group(1)
        doc = json.loads(Path(path).read_text())
        versions.append(version)
        headers.append(doc["header"])
        for r in doc["results"]:
            key = (r["case"], r["label"])
            if key not in units:
                order.append(key)
                units[key] = r["unit"]
            values[(version, key)] = r["value"]
    first = versions[0]
    lines = [f"# pg_rls_auth benchmark: PostgreSQL {', '.join(versions)} side by side", "",
             "One run of `scripts/bench.sh`, each version on its own release build and throwaway cluster, "
             "one after the other on the same machine. Each figure is the median of its runs after a warm-up run (raw runs "
             "in each version's report); the ratio column divides by PostgreSQL " + first + "'s figure "
             "(for ns/row and ms lower is better, for rates higher is better).", ""]
    lines += [f"- PostgreSQL {v}: [{Path(p).stem}.md]({Path(p).stem}.md). {h.splitlines()[0]}"
              for v, p, h in zip(versions, args.reports, headers)]
    fallback = [values.get((v, ("1. per-row cost in a filter", FALLBACK_ROW))) for v in versions]
    if all(fallback):
        lines += ["", "**Settings path on 16+**: `auth.user_id()` per row with the `request.jwt.claims` fallback "
                  "(the path that reads settings): " +
                  ", ".join(f"PostgreSQL {v} {x:,.1f} ns" for v, x in zip(versions, fallback)) + "; " +
                  "; ".join(f"{v} over {first}: {x / fallback[0]:.2f}x "
                            f"({'within' if x / fallback[0] <= FALLBACK_BOUND else 'OVER'} the {FALLBACK_BOUND}x bound)"
                            for v, x in zip(versions[1:], fallback[1:])) + "."]
    case = None
    for key in order:
        if key[0] != case:
            case = key[0]
            lines += ["", f"## {case}", "",
                      "| measurement | " + " | ".join(f"PostgreSQL {v}" for v in versions) + " | " +
                      " | ".join(f"{v} / {first}" for v in versions[1:]) + " |",
                      "|---|" + "---|" * (2 * len(versions) - 1)]
        base = values.get((first, key))
        cells = [f"{values[(v, key)]:,.1f} {units[key]}" if (v, key) in values else "" for v in versions]
        ratios = [f"{values[(v, key)] / base:.2f}x" if base and (v, key) in values else "" for v in versions[1:]]
        lines.append(f"| {key[1]} | " + " | ".join(cells + ratios) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
