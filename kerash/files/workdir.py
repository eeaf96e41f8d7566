"""Scratch space for tools that need it: $KERASH_WORKDIR, else /dev/shm, else the temp folder.

tmpfs_setup.sh prints the KERASH_WORKDIR line; RAM-backed folders make the
files that workers exchange cost no disk I/O.
"""

import os
import tempfile

from ..errors import UsageError


def workdir():
    """The folder for scratch files, created if KERASH_WORKDIR names one that does not exist."""
    chosen = os.environ.get("KERASH_WORKDIR")
    if chosen:
        try:
            os.makedirs(chosen, exist_ok=True)
        except OSError as e:
            raise UsageError(f"KERASH_WORKDIR={chosen} cannot be created: {e.strerror}") from None
        if not os.access(chosen, os.W_OK | os.X_OK):
            raise UsageError(f"KERASH_WORKDIR={chosen} is not writable")
        return chosen
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def scratch_dir(prefix):
    """A new private folder under the work dir, named PREFIX-<pid>-<random>."""
    return tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=workdir())


def remove_stale(prefix, root=None):
    """Remove work folders PREFIX-<pid>-… whose process is gone: left by a run that was killed."""
    import shutil

    root = root or workdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix + "-"):
            continue
        pid = name[len(prefix) + 1 :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            except OSError:
                pass

