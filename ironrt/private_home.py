"""The daemon's home is private: a 0700 folder owned by the daemon's user, with every file
in it (database and its WAL, logs, rotated logs, keys, config) 0600.

The home holds what agents were started with (their command and environment, which may
carry secrets of the shell that started them), every call's metadata, and logs of what
agents printed. So the daemon:

- creates files with umask 077 from its first instant (SQLite's WAL and shared-memory
  files, rotated logs and the log relay it spawns inherit it);
- tightens the modes of files an older version or another tool left readable (not
  `keys.toml`: a readable one is refused by keys.py, as its keys may have leaked);
- refuses to start on a home, or a file in it, that belongs to another user: a daemon run
  by root on a user's home would otherwise leave root-owned files the user's own daemon
  cannot open, and a daemon run by a user on someone else's folder would share secrets.
  One line says how to fix it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ironrt.config import Settings
from ironrt.errors import HomeNotPrivate as HomeNotPrivate  # defined there, re-exported

__all__ = ["HomeNotPrivate", "secure_home"]

#: What a file the daemon creates may allow: owner read/write only.
UMASK = 0o077


def secure_home(settings: Settings) -> None:
    """Create or check the home and tighten what is in it; HomeNotPrivate if it is not ours."""
    os.umask(UMASK)
    home = settings.home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _owned(home, home)
    os.chmod(home, 0o700)
    settings.logs_dir.mkdir(exist_ok=True, mode=0o700)
    _owned(settings.logs_dir, home)
    os.chmod(settings.logs_dir, 0o700)
    for folder in (home, settings.logs_dir):
        for entry in os.scandir(folder):
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                continue  # sockets, folders and links are the daemon's own or not its business
            path = Path(entry.path)
            _owned(path, home)
            if path == settings.keys_path:
                continue  # a readable keys file may have leaked: refused, not hushed (keys.py)
            if stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o077:
                os.chmod(path, 0o600)


def _owned(path: Path, home: Path) -> None:
    me = os.geteuid()
    owner = path.stat().st_uid
    if owner == me:
        return
    raise HomeNotPrivate(
        f"{path} belongs to {_user(owner)}, not to {_user(me)} who runs the daemon: "
        f"run `sudo chown -R {_user(me)} {home}` (or set IRONRT_HOME to a folder of your own)"
    )


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
