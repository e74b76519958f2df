#!/usr/bin/env python3
"""Runs a command and writes its peak resident set size (the kernel's ru_maxrss of the child,
in MiB) as JSON: `python3 bench/peak_rss.py OUT.json -- CMD ARGS...`. Exits with the command's
status."""
import json
import resource
import subprocess
import sys


def main():
    out, sep, *cmd = sys.argv[1:]
    assert sep == "--" and cmd, __doc__
    status = subprocess.run(cmd).returncode
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    with open(out, "w") as f:
        json.dump({"command": cmd, "peak_rss_mib": peak_kib / 1024, "status": status}, f)
    return status


if __name__ == "__main__":
    sys.exit(main())
