"""Fail on a `comfy-test lint --json` finding that .ci/lint_allowed.txt does not list.

    python3 -m comfy_test lint . --json | python3 .ci/check_lint.py .ci/lint_allowed.txt

The syntax level reports its findings as text (`<file>:` then `  Line N: <what> -- <hint>`), the
javascript level as a list; both become `<file>: <what>` (javascript: `<file>: <rule>`). A level
that fails for a reason with no findings to match (no dependency file, characters Windows cannot
encode, a crash) fails the check too.
"""
import json
import re
import sys


def findings(report):
    """{finding: where} of every level, and the failed levels that name no finding."""
    found, unexplained = {}, []
    for level, result in report.get("results", {}).items():
        if level == "javascript":
            for item in result.get("findings", []):
                found[f"{item['file']}: {item['rule']}"] = f"{item['file']}:{item['line']} {item['message']}"
        elif not result.get("passed", False):
            current, matched = None, False
            for line in (result.get("details") or "").splitlines():
                if re.match(r"^\S.*\.py:$", line):
                    current = line[:-1]
                elif current and (m := re.match(r"^\s+Line (\d+): (.*)$", line)):
                    what = m.group(2).split(" -- ")[0].strip()
                    found[f"{current}: {what}"] = f"{current}:{m.group(1)} {m.group(2)}"
                    matched = True
            if not matched:
                unexplained.append(f"{level}: {result.get('error')}\n{result.get('details')}")
        if level == "javascript" and not result.get("passed", False) and not result.get("findings"):
            unexplained.append(f"{level}: {result.get('error')}\n{result.get('details')}")
    return found, unexplained


def main():
    allowed = {line.strip() for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")}
    report = json.loads(sys.stdin.read())
    found, unexplained = findings(report)
    new = sorted(key for key in found if key not in allowed)
    for key in sorted(found):
        print(("allowed  " if key in allowed else "FINDING  ") + found[key])
    for key in sorted(allowed - set(found)):
        print(f"note: no longer found, remove it from {sys.argv[1]}: {key}")
    for text in unexplained:
        print("FAILED   " + text)
    if new or unexplained:
        print(f"comfy-test lint: {len(new)} finding(s) not in {sys.argv[1]}; fix them, or explain them in "
              "docs/development.md and list them there")
        return 1
    print("comfy-test lint: clean, or every finding explained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
