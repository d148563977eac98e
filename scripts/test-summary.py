#!/usr/bin/env python3
"""Reads meson's test logs of the given build folders and prints one closing line,
"N passed, N failed", counting every TAP test case (a test program that crashed, or
ran no test case, counts as one failure). Exits 1 when anything failed."""
import json
import os
import re
import sys

passed = failed = 0
problems = []
for build in sys.argv[1:]:
    log = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        problems.append(f"{build}: no test log")
        failed += 1
        continue
    with open(log) as f:
        for line in f:
            entry = json.loads(line)
            out = entry.get("stdout") or ""
            oks = len(re.findall(r"^ok \d+", out, re.M))
            bad = len(re.findall(r"^not ok \d+", out, re.M))
            result = entry.get("result")
            passed += oks
            failed += bad
            if result not in ("OK", "EXPECTEDFAIL") and bad == 0:
                # crashed, timed out, sanitizer report, or ran no test at all (our tests
                # never skip): the program itself failed
                problems.append(f"{build}: {entry.get('name')}: {result}")
                failed += 1
            elif oks + bad == 0:
                passed += 1
for p in problems:
    print(p)
sys.stdout.flush()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
