#!/usr/bin/env python3
"""The readiness table of docs/survey.md from a survey's JSON lines.

Usage: bench/survey-table.py SURVEY.jsonl PACKAGE.deb...

A file's outcome at a page size is its worst over the loaders checked; a
package is ready at P when every ELF file in it is ok at P. The reasons are
the finding kinds as severe as the file's outcome, counted once per file.
"""

import collections
import json
import os
import re
import sys

SEVERITY = ["ok", "degraded", "broken", "rejected"]


def architecture(package):
    match = re.search(r"_([a-z0-9]+)\.deb$", package)
    return match.group(1) if match else "?"


def main(survey, packages):
    files = collections.defaultdict(list)  # package -> reports
    errors = 0
    with open(survey, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if "error" in record:
                errors += 1
                continue
            files[os.path.basename(record["path"].split("!/")[0])].append(record)
    page_sizes = sorted({r["page_size"] for reports in files.values() for f in reports for r in f["results"]})
    by_arch = collections.defaultdict(list)
    for package in packages:
        by_arch[architecture(package)].append(os.path.basename(package))

    head = ["arch", "packages", "with ELF", "ELF files"]
    for page in page_sizes:
        head += [f"{page // 1024}K ready", f"{page // 1024}K degraded", f"{page // 1024}K broken or rejected"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    reasons = {page: collections.Counter() for page in page_sizes}
    for arch, names in sorted(by_arch.items()):
        with_elf = [name for name in names if files.get(name)]
        row = [arch, len(names), len(with_elf), sum(len(files[name]) for name in with_elf)]
        for page in page_sizes:
            package_outcomes = collections.Counter()
            for name in with_elf:
                worst = 0
                for report in files[name]:
                    results = [r for r in report["results"] if r["page_size"] == page]
                    outcome = max((SEVERITY.index(r["outcome"]) for r in results), default=0)
                    worst = max(worst, outcome)
                    if outcome:
                        kinds = {f["kind"] for r in results for f in r["findings"] if f["severity"] == SEVERITY[outcome]}
                        reasons[page].update(f"{arch} {kind}" for kind in kinds)
                package_outcomes[min(worst, 2)] += 1
            row += [package_outcomes[0], package_outcomes[1], package_outcomes[2]]
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print()
    for page in page_sizes:
        top = ", ".join(f"{reason} ({count} files)" for reason, count in reasons[page].most_common(6)) or "none"
        print(f"- {page // 1024}K, the reasons files are not ok: {top}")
    print(f"- inputs that could not be analysed: {errors}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
