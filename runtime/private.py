"""State that only the service's own user may read: new files 0600 and directories 0700, whatever
umask the service was started with (systemd's UMask= is not there outside systemd)."""

from __future__ import annotations

import os
from pathlib import Path


def keep_private(*directories: Path) -> None:
    """Make every file this process creates from now on owner-only, and ``directories`` 0700."""
    os.umask(0o077)
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
