"""A warm server of the real WarmServer class serving tests/warm_fake_script.py, without the preload (it starts in
a fraction of a second): `python tests/warm_fake_server.py SOCKET WATCHED_DIR IDLE_S`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mpm_inr.warm.server import WarmServer

SCRIPT = Path(__file__).with_name("warm_fake_script.py")

if __name__ == "__main__":
    socket_path, watched, idle = sys.argv[1:4]
    WarmServer(Path(socket_path), dict(os.environ), float(idle), script=SCRIPT, watched=[Path(watched)]).serve()
