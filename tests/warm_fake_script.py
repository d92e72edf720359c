"""What the fake warm server runs: `exit CODE` | `echo` (argv, cwd and $WARM_TEST_VALUE as one JSON line, stdin's
first line on stderr) | `sleep PIDFILE` (writes its pid, then waits for a signal; Ctrl-C exits 130)."""

from __future__ import annotations

import json
import os
import sys
import time

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "exit":
        sys.exit(int(sys.argv[2]))
    if what == "echo":
        print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "value": os.environ.get("WARM_TEST_VALUE")}))
        print(f"stdin: {sys.stdin.readline().strip()}", file=sys.stderr)
        sys.exit(0)
    if what == "sleep":
        with open(sys.argv[2], "w") as out:
            out.write(str(os.getpid()))
        try:
            time.sleep(120)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
