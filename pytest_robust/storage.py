"""Atomic writes and per-entry locks of the on-disk caches, safe on a shared network filesystem.

The checkpoint cache (:mod:`pytest_robust.cache`), the result cache
(:mod:`pytest_robust.result_cache`) and the decode cache (:mod:`pytest_robust.data.decode_cache`)
may live on a filesystem that several processes - pytest-xdist workers, several machines, several
CI jobs - share. Two rules make that safe:

- **Every file is published whole.** It is written to a temporary file in the same folder, named
  after this host and process (:func:`temp_prefix`: two machines may have the same pid) plus a
  random part, flushed, fsynced and renamed over the final name with ``os.replace`` - one atomic
  rename, also on NFS, so a reader sees the old file or the new one, never a partial one.
- **An entry is computed once.** Its builder takes the entry's lock, re-reads the cache (another
  process may have built it while this one waited) and computes only on a miss.

The lock (:func:`cache_lock`) is chosen with ``$PYTEST_ROBUST_CACHE_LOCK`` (:class:`LockSettings`):

- ``os`` (default): :class:`filelock.FileLock`, an operating-system lock (``fcntl``/``flock``;
  ``msvcrt`` on Windows), released by the kernel when its process dies. Right for one machine; over
  NFS it depends on the server's lock service and the mount options, and on some network
  filesystems it does not exclude other machines at all.
- ``soft``: a lock *file* (``<entry's lock>.soft``) created with ``O_CREAT | O_EXCL`` (exclusive
  creation is atomic on NFSv3 and later and on the usual cluster filesystems), holding the holder's
  host, pid and a token. Its holder refreshes the file's modification time every ``stale_s / 10``
  seconds (at most 30) while it holds it - training a model can take hours. A waiter that sees the
  lock file unchanged for ``$PYTEST_ROBUST_CACHE_LOCK_STALE`` seconds (default 300, measured on the
  waiter's own clock, so the machines' clocks need not agree) stops with a
  :class:`~pytest_robust.errors.StaleLockError` naming the file and its holder: a killed process
  (``kill -9``, out of memory, a lost machine) leaves its lock file behind, and only a person can
  tell whether that holder is really gone, so the file is never deleted automatically. A normal
  exit, an exception and Ctrl-C remove it.

The two kinds do not exclude each other: every process that shares a cache must use the same one.

filelock's own ``SoftFileLock`` is not used: what it does with a dead holder's lock differs across
the versions this package accepts (3.13: nothing but the caller's timeout; later versions: reclaim a
dead pid on the same host, or expiry by age, which can admit a second holder while the first still
trains). A heartbeat tells a holder that died on another machine from one that is still working.

Stdlib only (filelock is imported when an ``os`` lock is taken): the report and ``verify`` write
through :func:`atomic_write_bytes` without torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

from pytest_robust.errors import RobustConfigError, StaleLockError

log = logging.getLogger(__name__)

#: the environment variable that chooses the caches' lock: ``os`` or ``soft``
LOCK_ENV: Final = "PYTEST_ROBUST_CACHE_LOCK"
#: seconds a soft lock file may stay unchanged before a waiter calls it stale
STALE_ENV: Final = "PYTEST_ROBUST_CACHE_LOCK_STALE"
LOCK_KINDS: Final = ("os", "soft")
DEFAULT_STALE_S: Final = 300.0
#: the longest pause between two heartbeats of a soft lock's holder
MAX_HEARTBEAT_S: Final = 30.0
#: the longest pause between two attempts of a waiter
MAX_POLL_S: Final = 1.0
#: appended to an entry's lock file name for its soft lock file (``.lock.soft``)
SOFT_SUFFIX: Final = ".soft"

LockKind = Literal["os", "soft"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LockSettings:
    """How the caches lock an entry: ``kind`` (``os`` or ``soft``) and, for ``soft``, ``stale_s``."""

    kind: LockKind = "os"
    stale_s: float = DEFAULT_STALE_S

    def __post_init__(self) -> None:
        if self.kind not in LOCK_KINDS:
            raise RobustConfigError(
                f"{LOCK_ENV}={self.kind!r}: unknown cache lock; use 'os' (one machine, the default) or "
                "'soft' (a cache on a network filesystem that several machines share)"
            )
        if isinstance(self.stale_s, bool) or not (math.isfinite(self.stale_s) and self.stale_s > 0):
            raise RobustConfigError(f"{STALE_ENV}={self.stale_s!r}: must be a positive number of seconds")

    @property
    def heartbeat_s(self) -> float:
        """How often a soft lock's holder refreshes its lock file."""
        return min(MAX_HEARTBEAT_S, self.stale_s / 10)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LockSettings:
        """From ``$PYTEST_ROBUST_CACHE_LOCK`` and ``$PYTEST_ROBUST_CACHE_LOCK_STALE`` (unset or empty:
        the defaults); a bad value is a :class:`~pytest_robust.errors.RobustConfigError` naming it."""
        env = os.environ if environ is None else environ
        kind = (env.get(LOCK_ENV) or "os").strip().lower()
        raw = (env.get(STALE_ENV) or "").strip()
        try:
            stale = float(raw) if raw else DEFAULT_STALE_S
        except ValueError:
            raise RobustConfigError(f"{STALE_ENV}={raw!r}: must be a positive number of seconds") from None
        return cls(kind=cast(LockKind, kind), stale_s=stale)  # __post_init__ checks both

    def describe(self) -> str:
        return "soft (lock files)" if self.kind == "soft" else "os (fcntl/flock)"


# --- atomic writes ---------------------------------------------------------------------------------


def _host() -> str:
    """This machine's name, reduced to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() or "host")[:64]


def temp_prefix(name: str) -> str:
    """``.<name>.<host>.<pid>.``: the start of a temporary file's name beside ``name``.

    ``tempfile.mkstemp`` adds a random part and creates the file with ``O_EXCL``; the host and pid
    make the name unique across machines that share the folder (and say whose a leftover is).
    """
    return f".{name}.{_host()}.{os.getpid()}."


def atomic_replace(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, fsync it and publish it with ``os.replace``.

    The temporary file is removed when anything fails (also Ctrl-C); ``path`` is then untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(payload))


# --- locks -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike[str], settings: LockSettings | None = None) -> Iterator[None]:
    """Hold the lock of one cache entry for the block: an ``os`` lock on the file ``path``, a
    ``soft`` lock file ``path`` + :data:`SOFT_SUFFIX` (an ``os`` lock's file stays after use: under
    the other name it never looks like a held soft lock when a cache changes kind).

    ``settings``: None reads them from the environment (:meth:`LockSettings.from_env`).
    """
    settings = LockSettings.from_env() if settings is None else settings
    if settings.kind == "os":
        from filelock import FileLock

        with FileLock(str(path)):
            yield
        return
    lock = SoftLock(soft_lock_path(path), stale_s=settings.stale_s, heartbeat_s=settings.heartbeat_s)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def soft_lock_path(path: str | os.PathLike[str]) -> Path:
    """The soft lock file of the entry whose ``os`` lock file is ``path``."""
    return Path(f"{os.fspath(path)}{SOFT_SUFFIX}")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _holder(path: Path) -> str:
    """Who the lock file says holds it, for a message."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {record['pid']} on host {record['host']}, since {record['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a holder that left no readable record"


class SoftLock:
    """A lock file created exclusively, refreshed by its holder, reported when it goes stale.

    Not re-entrant; one holder at a time across every process and machine that sees the file.
    """

    def __init__(
        self, path: Path, *, stale_s: float = DEFAULT_STALE_S, heartbeat_s: float | None = None
    ) -> None:
        self.path = path
        self.stale_s = float(stale_s)
        self.heartbeat_s = (
            float(heartbeat_s) if heartbeat_s is not None else min(MAX_HEARTBEAT_S, stale_s / 10)
        )
        self._record: bytes | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> SoftLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _try_create(self) -> bool:
        record = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "token": secrets.token_hex(8),
            },
            sort_keys=True,
        ).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._record = record
        return True

    def acquire(self) -> None:
        """Wait for the lock; :class:`~pytest_robust.errors.StaleLockError` when its file has not
        changed for ``stale_s`` seconds (its holder stopped refreshing it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        seen = _signature(self.path)
        since = time.monotonic()
        pause = 0.02
        while not self._try_create():
            now = _signature(self.path)
            if now != seen:  # refreshed, released or taken by another process: a live lock
                seen, since = now, time.monotonic()
            elif now is not None and time.monotonic() - since >= self.stale_s:
                raise StaleLockError(
                    f"the cache lock file {str(self.path)!r} has not been refreshed for "
                    f"{self.stale_s:g} s ({_holder(self.path)}): the process that held it probably "
                    "died (killed, out of memory, a lost machine). If no pytest-robust run is using this "
                    "cache entry, delete that file and run again. (A live holder refreshes it every "
                    f"{self.heartbeat_s:g} s; {STALE_ENV} sets the wait.)"
                )
            if now is not None:
                time.sleep(pause)
                pause = min(MAX_POLL_S, pause * 2)
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"pytest-robust lock {self.path.name}", daemon=True
        )
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError as exc:  # removed by hand: the next waiter may take it
                log.warning("cache lock %s: cannot refresh it (%s)", self.path, exc)

    def release(self) -> None:
        """Stop refreshing and remove the lock file - only when it is still this holder's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        try:
            ours = self.path.read_bytes() == self._record
        except OSError:
            ours = False
        if ours:
            self.path.unlink(missing_ok=True)
        else:
            log.warning("cache lock %s: no longer this process's lock file; left in place", self.path)
        self._record = None
