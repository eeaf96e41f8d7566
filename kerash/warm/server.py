"""The warm tool server behind `kerash warm start`.

It imports numpy, typer and every kerash module once, then serves launchers
(launch.py) on a Unix socket.  For each run it checks that a child forked
from it would behave as a cold start (same interpreter, kerash files,
Python options, start-up environment, user, privileges, root folder,
namespaces, personality, control group, CPU affinity, oom_score_adj, I/O
priority), tells the launcher so ("ready", or "cold"), and once the
launcher commits ("go") hands the run to a spare child: one forked ahead,
its random generators reseeded and its pages warmed by a few tool runs.
The child takes on the launcher's descriptors at the same numbers, its
working folder, umask, limits, priority, environment, argv and signal
dispositions and mask, makes fresh standard streams as Python's start-up
does, runs the tool and exits as the interpreter would.  The server passes
signals on (acknowledging each), reports the child's status (the child
reports it itself once its descriptors are closed), kills the child when
its launcher disappears, and exits after an idle time, when stopped, or
when its kerash files change.

One process, one thread, a poll loop: the children are forked from the loop
and return from it (`serve` returns the tool to run only in a child).
"""

import errno
import fcntl
import gc
import marshal
import os
import select
import signal
import socket
import stat
import sys
import time

from . import launch

# Environment variables read while the interpreter, its libraries (OpenBLAS,
# libc's locale and malloc) and the preloaded modules start: a child cannot
# change their effect, so a launcher whose values differ runs cold.
_STARTUP_PREFIXES = (b"PYTHON", b"LC_", b"OPENBLAS_", b"GOTO", b"OMP_", b"MKL_", b"BLIS_", b"VECLIB_",
                     b"KMP_", b"GOMP_", b"NPY_", b"NUMPY_", b"LD_", b"MALLOC_", b"TYPER_", b"_TYPER_")
# Set by mpiexec for its ranks.
_MPI_PREFIXES = (b"PMI_", b"PMIX_", b"OMPI_", b"HYDRA_", b"MPI_LOCALRANKID")
_STARTUP_NAMES = {b"LANG", b"LANGUAGE", b"LOCPATH", b"NLSPATH", b"GCONV_PATH", b"GLIBC_TUNABLES"}

_IDENTITY_REASONS = {
    "installation": "another installation (interpreter or kerash folder)",
    "version": "another Python version",
    "path": "sys.path differs from the warm server's",
    "flags": "Python options differ from the warm server's",
    "xoptions": "-X options differ from the warm server's",
    "warnoptions": "warning options differ from the warm server's",
    "ids": "user or groups differ from the warm server's",
    "root": "another root folder (chroot) than the warm server's",
    "namespaces": "another namespace than the warm server's",
    "personality": "another personality (setarch) than the warm server's",
    "cgroup": "another control group (its limits would not apply)",
    "privileges": "other capabilities or seccomp filters than the warm server's",
    "affinity": "CPU affinity differs from the warm server's (BLAS threads)",
    "scheduler": "scheduling policy differs from the warm server's",
}

SPARES = 4  # children forked and warmed ahead: the stages of a pipe start at once
_CHANGED = "kerash files changed since the warm server started (it stops now)"
_STOP_GRACE = 10.0  # seconds a stopping server gives running tools after SIGTERM
_GO_WAIT = 0.1  # seconds spares wait to be forked while a launcher told "ready" has not said "go"
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_MAX_FD = 1 << 30
# ioprio_get's system call number by machine (no C library wraps it); IOPRIO_WHO_PROCESS is 1.
_IOPRIO_GET = {"x86_64": 252, "i386": 290, "i686": 290, "aarch64": 31, "riscv64": 31, "loongarch64": 31,
               "armv7l": 315, "armv6l": 315, "ppc64le": 274, "ppc64": 274, "s390x": 283}
_libc = None


class WarmError(Exception):
    """The server cannot start."""


def _preload():
    """Import what the tools import, recording the environment variables Python code reads meanwhile."""
    reads = set()
    environ = type(os.environ)
    getitem = environ.__getitem__

    def recording(self, key):
        reads.add(self.encodekey(key))
        return getitem(self, key)

    environ.__getitem__ = recording
    try:
        import importlib
        import pkgutil

        import threadpoolctl

        # numpy.random takes 30 ms and most tools need it
        importlib.import_module("numpy.ma")
        importlib.import_module("numpy.random")

        import kerash

        from ..cli import catalog

        for name in catalog.TOOLS:
            catalog.load(name)
        # Every kerash module the tools import as they run, but not the optional extras' (pictures).
        for module in pkgutil.walk_packages(kerash.__path__, "kerash."):
            if not module.name.startswith("kerash.plot"):
                importlib.import_module(module.name)
    finally:
        environ.__getitem__ = getitem
    return reads, threadpoolctl.ThreadpoolController()


def _warm_up():
    """Run a few tools on a small matrix in this process, reading and writing memory.

    The first calls fill lazy caches (typer's parameter handling, numpy's
    ufunc dispatch); in a spare child they also copy the pages a run touches.
    """
    from ..cli import catalog, runner

    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdout = sys.stderr = open(os.devnull, "w")
    for name, args in (("matrix-transpose", []), ("matrix-transpose", ["--format", "npy"]), ("matrix-mul", ["-", "-"])):
        r, w = os.pipe()  # a descriptor to read, as standard input is
        os.write(w, b"1 2\n3 4\n")
        os.close(w)
        sys.stdin = open(r)
        runner.invoke(catalog.load(name), name, args)
        sys.stdin.close()
    sys.stdout.close()
    sys.stdin, sys.stdout, sys.stderr = saved


def _code_paths():
    """The kerash package's folders and .py files, and the site-packages folders of numpy and typer."""
    from importlib.util import find_spec

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths, folders = [], [package]
    while folders:
        folder = folders.pop()
        paths.append(folder)  # its mtime changes when a file is added, removed or renamed
        for entry in os.scandir(folder):
            if entry.name.endswith(".py"):
                paths.append(entry.path)
            elif entry.is_dir() and entry.name != "__pycache__":
                folders.append(entry.path)
    paths += sorted({os.path.dirname(os.path.dirname(find_spec(name).origin)) for name in ("numpy", "typer")})
    return paths


def _stamp(paths):
    """What changes when one of `paths` is written, replaced or removed."""
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
            stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamp.append(None)
    return stamp


def own_folder(path):
    """Create `path` (mode 0700) if needed and check that only this user can use it; True if created here."""
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        created = False
    except OSError as e:
        raise WarmError(f"cannot create {path}: {e.strerror}") from None
    st = os.lstat(path)
    if launch.folder_problem(st):
        import pwd

        try:
            owner = f"{pwd.getpwuid(st.st_uid).pw_name} (uid {st.st_uid})"
        except KeyError:
            owner = f"uid {st.st_uid}"
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a folder"
        raise WarmError(f"{path} is {what} of {owner} with mode {st.st_mode & 0o7777:04o}, not a folder of yours "
                        "with mode 0700 (another user may have made it first): set KERASH_WARM_DIR to a folder of "
                        "your own, or remove it")
    return created


def _oom_score_adj(pid):
    try:
        with open(f"/proc/{pid}/oom_score_adj", "rb") as f:
            return f.read()
    except OSError:
        return None


def _ioprio(pid):
    """The I/O scheduling class and level of process `pid` (0: this one), None where unknown; the class "none"
    (0) follows the nice value, which the child takes on, whatever level the kernel shows with it."""
    global _libc
    number = _IOPRIO_GET.get(os.uname().machine)
    if number is None:
        return None
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    value = _libc.syscall(number, 1, pid)
    if value < 0:
        return None
    return 0 if value >> 13 == 0 else value


class _Client:
    __slots__ = ("sock", "peer", "buf", "fds", "pid", "control", "pending")

    def __init__(self, sock, peer):
        self.sock, self.peer, self.buf, self.fds, self.pid, self.control = sock, peer, b"", [], None, False
        self.pending = None  # ((pid, channel) of the child kept for it, request) until "go"


class Server:
    def __init__(self, idle, spares=SPARES):
        self.pid = os.getpid()
        self.idle = idle
        self.env = dict(os.environb)
        # Taken before the imports: a file changed meanwhile makes the first run find it changed.
        self.code_paths = _code_paths()
        self.code_stamp = _stamp(self.code_paths)
        reads, controller = _preload()
        _warm_up()
        self.startup_keys = reads | {k for k in self.env if k.startswith(_STARTUP_PREFIXES) or k in _STARTUP_NAMES}
        self.blas = [(lib, lib.num_threads) for lib in controller.lib_controllers if lib.user_api == "blas"]
        self.identity = launch.identity()
        # Encoding and errors of each standard stream at start-up, and their buffering (-u, PYTHONUNBUFFERED).
        buffered = not sys.__stdout__.write_through
        self.stdio = [(f.encoding, f.errors, buffered) for f in (sys.__stdin__, sys.__stdout__, sys.__stderr__)]
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.prctl(_PR_SET_NAME, b"kerash-warm", 0, 0, 0)  # for ps and top
        with open("/proc/self/stat", "rb") as f:  # where the kernel keeps the command line (proc(5): fields 48, 49)
            fields = f.read().rsplit(b")", 1)[1].split()
        self.argv_area = int(fields[45]), int(fields[46])
        self.signals = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
        import resource

        # Room for many launchers' descriptors at once; a child takes on its launcher's limits.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.path = launch.socket_path()
        self.folder = os.path.dirname(self.path)
        self.created_folder = own_folder(self.folder)
        self.lock_fd = self._lock(self.path[: -len(".sock")] + ".lock")
        self.listener = self._listen()
        self.started = time.time()
        self.served = 0
        self.clients = {}  # socket fd → _Client
        self.children = {}  # pid → _Client running a tool (its socket is None once the launcher is gone)
        # Spare children, forked ahead and warmed, waiting for a run: pid → socket to hand it over.
        self.spares, self.spare_count = {}, spares
        self.leaving = set()  # spare children told to exit
        self.refill_after = 0.0
        self.stopping = None  # None, or the time by which running tools must be gone
        self.stop_requested = False
        self.last_active = time.monotonic()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._request_stop)
        self.poll = select.poll()
        self.poll.register(self.wake_r, select.POLLIN)
        self.poll.register(self.listener, select.POLLIN)
        # Objects made so far are never freed: the children's garbage collector leaves their pages shared.
        gc.freeze()

    # ------------------------------------------------------------ start and end

    def _request_stop(self, signum, frame):
        self.stop_requested = True  # acted on by the loop, which the wake-up descriptor wakes

    def _lock(self, path):
        """Hold the installation's lock file for the server's lifetime: one server per installation."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise WarmError("a warm server for this installation is already running") from None
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # an exiting server removed the file we locked: lock the new one

    def _listen(self):
        if len(self.path.encode()) > 107:
            raise WarmError(f"socket path too long for a Unix socket: {self.path} (set KERASH_WARM_DIR to a shorter folder)")
        try:
            os.unlink(self.path)  # a stale socket: its server is gone, since we hold the lock
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.socket_ino = os.stat(self.path).st_ino
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    def close_listener(self):
        """Stop accepting launchers: they start cold from now on."""
        if self.listener is None:
            return
        self.poll.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:
            if os.stat(self.path).st_ino == self.socket_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _stop(self, terminate):
        """Stop taking runs; with `terminate`, SIGTERM the running tools (SIGKILL after a grace time)."""
        if self.stopping is None:
            self.close_listener()
            for client in list(self.clients.values()):
                if client.pid is None and client.pending is None and not client.control:
                    self._reply(client, ("cold", "the warm server is stopping"))
                    self._drop(client)
            for pid, channel in self.spares.items():
                channel.close()  # a spare exits when its channel closes
                self.leaving.add(pid)
            self.spares = {}
            self.stopping = float("inf")
        if terminate and self.stopping == float("inf"):
            self.stopping = time.monotonic() + _STOP_GRACE
            for pid in self.children:
                _kill(pid, signal.SIGTERM)

    def _finish(self):
        for client in list(self.clients.values()):
            self._drop(client)
        try:
            os.unlink(self.path[: -len(".sock")] + ".lock")
        except FileNotFoundError:
            pass
        os.close(self.lock_fd)
        if self.created_folder:
            try:
                os.rmdir(self.folder)
            except OSError:  # other installations' servers use it
                pass

    # ------------------------------------------------------------ the loop

    def serve(self):
        """Serve until stopped or idle; in a forked child, return the tool to run."""
        while True:
            if self.stop_requested:
                self.stop_requested = False
                self._stop(terminate=True)
            now = time.monotonic()
            if self.stopping is not None:
                pending = [c for c in self.clients.values() if c.pending is not None]
                if not self.children and not self.leaving and not pending:
                    self._finish()
                    return None
                if now > self.stopping:
                    for pid in self.children:
                        _kill(-pid, signal.SIGKILL)
                    for client in pending:  # a launcher that never committed
                        self._drop(client)
                    self.stopping = now + _STOP_GRACE
                timeout = None if self.stopping == float("inf") else self.stopping - now
            elif len(self.spares) < self.spare_count:
                # Fork a spare if nothing else is waiting; a launcher told "ready" sends its "go" at once: it comes first.
                committing = any(c.pending is not None for c in self.clients.values())
                timeout = max(_GO_WAIT if committing else 0, self.refill_after - now)
            elif self.idle and not self.clients and not self.children:
                timeout = self.last_active + self.idle - now
                if timeout <= 0:
                    self._stop(terminate=False)
                    continue
            else:
                timeout = None
            events = self.poll.poll(None if timeout is None else max(0, int(timeout * 1000)) + (timeout > 0))
            if not events and self.stopping is None and len(self.spares) < self.spare_count:
                spare = self._spawn(warm=True)
                if isinstance(spare, str):
                    return spare
                if spare:
                    self.spares[spare[0]] = spare[1]
                else:  # out of processes or memory: try again later
                    self.refill_after = time.monotonic() + 1.0
            for fd, _ in events:
                if fd == self.wake_r:
                    _drain(self.wake_r)
                    self._reap()
                elif self.listener is not None and fd == self.listener.fileno():
                    self._accept()
                elif fd in self.clients:
                    client = self.clients[fd]
                    try:
                        entry = self._readable(client)
                    except Exception:  # a malformed request: that client only
                        self._drop(client)
                        continue
                    if entry:
                        return entry

    def _accept(self):
        while self.listener is not None:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors: leave the rest queued
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    return
                raise
            pid, uid = launch.peer(sock)
            if uid != os.getuid():
                sock.close()
                continue
            sock.setblocking(False)
            self.clients[sock.fileno()] = _Client(sock, pid)
            self.poll.register(sock, select.POLLIN)

    def _drop(self, client):
        if client.pending is not None:
            self._release(client)
        if client.sock is not None:
            self.clients.pop(client.sock.fileno(), None)
            self.poll.unregister(client.sock)
            client.sock.close()
            client.sock = None
        for fd in client.fds:
            os.close(fd)
        client.fds = []
        self.last_active = time.monotonic()

    def _reply(self, client, frame):
        try:
            client.sock.setblocking(True)
            launch.send_frame(client.sock, frame)
            client.sock.setblocking(False)
        except OSError:
            pass

    def _readable(self, client):
        data, fds, truncated = _receive(client.sock)
        if data is None:
            return None
        client.fds += fds
        if truncated:  # with "go": the launcher is committed, and told why the run failed
            self._reply(client, ("error" if client.pending else "cold", "the warm server could not take every descriptor"))
            self._drop(client)
            return None
        if not data:
            self._hangup(client)
            return None
        client.buf += data
        while len(client.buf) >= 4:
            size = int.from_bytes(client.buf[:4], "little")
            if len(client.buf) < 4 + size:
                break
            frame = marshal.loads(client.buf[4 : 4 + size])
            client.buf = client.buf[4 + size :]
            entry = self._frame(client, frame)
            if entry:
                return entry
            if client.sock is None:
                break
        return None

    def _hangup(self, client):
        """The launcher is gone: a running tool dies with it, as a cold tool would."""
        if client.pid is not None and client.pid in self.children:
            _kill(client.pid, signal.SIGKILL)
        self._drop(client)

    def _frame(self, client, frame):
        kind = frame[0]
        if kind == "run" and client.pid is None and client.pending is None:
            return self._run(client, frame[1])
        if kind == "go" and client.pending is not None:
            return self._go(client)
        if kind == "sig":
            # ("sig", signal, to the group, number, launcher's time): acknowledged, so that a launcher that hears
            # nothing delivers it itself; too old to relay once that launcher may have done so.
            if client.pid not in self.children:
                answer = "gone"
            elif time.monotonic() - frame[4] > launch.SIGNAL_STALE:
                answer = "stale"
            else:
                _kill(-client.pid if frame[2] else client.pid, frame[1])
                answer = "relayed"
            self._reply(client, ("ack", frame[3], answer))
        elif kind == "done" and client.peer in self.children:
            # A child that has closed its descriptors reports its status before the kernel tears it down.
            self._report(client.peer, frame[1])
            self._drop(client)
        elif kind == "status":
            self._reply(client, ("status", self.status()))
            self._drop(client)
        elif kind == "stop":
            client.control = True
            self._reply(client, ("stopping", self.pid))
            self._stop(terminate=True)
        return None

    def status(self):
        return {"pid": self.pid, "socket": self.path, "uptime": time.time() - self.started,
                "served": self.served, "running": len(self.children), "idle": self.idle}

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.leaving.discard(pid)
            channel = self.spares.pop(pid, None)
            if channel is not None:
                channel.close()
            if pid in self.children:
                self._report(pid, status)
                del self.children[pid]
            self.last_active = time.monotonic()

    def _report(self, pid, status):
        """Pass a run's wait status to its launcher (once: from the child's report or from waitpid)."""
        client = self.children.get(pid)
        if client is not None and client.sock is not None:
            self._reply(client, ("exit", status))
            self._drop(client)

    # ------------------------------------------------------------ one run

    def _cold_reason(self, request, pid):
        """Why a forked child would not behave as a cold start of this request from process `pid`, or None."""
        if self.stopping is not None:
            return "the warm server is stopping"
        env = request["env"]
        if any(key.startswith(_MPI_PREFIXES) for key in env):
            return "an MPI rank (its MPI library wants the process mpiexec started)"
        keys = self.startup_keys | {k for k in env if k.startswith(_STARTUP_PREFIXES) or k in _STARTUP_NAMES}
        for key in sorted(keys):
            if env.get(key) != self.env.get(key):
                return f"{key.decode(errors='replace')} differs from the warm server's (it acts at start-up)"
        for key, value in request["identity"].items():
            mine = self.identity.get(key)
            if value != mine:
                if key == "namespaces" and isinstance(value, dict) and isinstance(mine, dict):
                    names = sorted(n for n in {*value, *mine} if value.get(n) != mine.get(n))
                    return f"another {', '.join(names)} namespace than the warm server's"
                return _IDENTITY_REASONS.get(key, key)
        # Read here, from the launcher's /proc entry and by its pid: the launcher pays nothing for them.
        if _oom_score_adj(pid) != _oom_score_adj("self"):
            return "oom_score_adj differs from the warm server's (the out-of-memory killer's choice)"
        if _ioprio(pid) != _ioprio(0):
            return "I/O priority (ionice) differs from the warm server's"
        import resource

        for r, soft, hard in request["rlimits"]:
            if not _within(hard, resource.getrlimit(r)[1]):
                return "a resource limit is above the warm server's"
            if r in (resource.RLIMIT_AS, resource.RLIMIT_DATA) and soft != resource.RLIM_INFINITY:
                return "a memory limit (ulimit -v or -d): a warm child maps all the server's modules"
        if request["nice"] < os.getpriority(os.PRIO_PROCESS, 0) and os.geteuid() != 0:
            return "a higher priority (nice) than the warm server's"
        if _stamp(self.code_paths) != self.code_stamp:
            return _CHANGED
        return None

    def _run(self, client, request):
        """A launcher asks for a run: answer "cold" with the reason, or keep a child for it and answer "ready".

        The launcher's descriptors come with its "go" only: a server stopped
        before it holds none of them (a pipe it held open would not end).
        """
        reason = self._cold_reason(request, client.peer)
        if reason is None:
            child = self._take_spare() or self._spawn(warm=False)
            if isinstance(child, str):
                return child
            if child is None:
                reason = "the warm server cannot fork"
        if reason:
            self._reply(client, ("cold", reason))
            self._drop(client)
            if reason == _CHANGED:
                self._stop(terminate=False)
            return None
        # The run starts on the launcher's "go" only: a launcher that gave up waiting for this answer, and
        # runs cold, hangs up instead, and the child goes back to the spares.
        client.pending = (child, request)
        self._reply(client, ("ready", child[0]))
        return None

    def _go(self, client):
        """The launcher has committed: hand the run to the child kept for it (to a new one if that one died)."""
        child, request = client.pending
        fds, client.fds = client.fds, []
        if len(fds) != len(request["fds"]) + 1:
            for fd in fds:
                os.close(fd)
            self._reply(client, ("error", "the warm server did not receive every descriptor"))
            self._drop(client)
            return None
        client.pending = None
        while child is not None:
            pid, channel = child
            try:
                launch.send_frame(channel, ("run", request), fds)
                channel.close()
                break
            except OSError:  # the spare was killed meanwhile: hand the run to a new child
                channel.close()
                _kill(pid, signal.SIGKILL)
            child = self._spawn(warm=False)
            if isinstance(child, str):
                return child
            if child is None:
                self._reply(client, ("error", "the warm server cannot fork"))
            else:
                self._reply(client, ("child", child[0]))
        for fd in fds:
            os.close(fd)
        if child is None:
            self._drop(client)
            return None
        client.pid = pid
        self.children[pid] = client
        self.served += 1
        if self.stopping is not None and self.stopping != float("inf"):
            _kill(pid, signal.SIGTERM)  # `kerash warm stop` ends the running tools
        return None

    def _release(self, client):
        """A launcher that did not commit: its child goes back to the spares, or away."""
        (pid, channel), _ = client.pending
        client.pending = None
        if self.stopping is None and len(self.spares) < self.spare_count:
            self.spares[pid] = channel
            return
        channel.close()  # a spare exits when its channel closes
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                self.leaving.add(pid)
        except ChildProcessError:  # reaped already
            pass

    def _take_spare(self):
        """A spare child (pid, channel), or None."""
        if not self.spares:
            return None
        pid = next(iter(self.spares))
        return pid, self.spares.pop(pid)

    def _spawn(self, warm):
        """Fork a child that waits for a run: (pid, channel) here, the tool to run in the child, None if fork fails.

        The child returns through its callers' frames up to serve(): none of
        them may hold a try/finally or a with block around the call.
        """
        channel, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Signals stay blocked in the child until it has the launcher's dispositions.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            channel.close()
            child_end.close()
            return None
        if pid == 0:
            try:
                channel.detach()
                return self._child(child_end, warm)
            except BaseException as e:
                _report_setup_failure(e)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_end.close()
        try:
            os.setpgid(pid, pid)
        except OSError:  # the child did it first
            pass
        return pid, channel

    def _child(self, channel, warm):
        """In a forked child: leave the server, wait for a run and take on the launcher's process state."""
        os.setpgid(0, 0)
        # Die with the server, whose launchers would otherwise return while their tools run on.
        self.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self.pid:
            os._exit(1)
        signal.set_wakeup_fd(-1)
        # The server's sockets must not close numbers that the tool reuses.
        kept = [c.pending[0][1] for c in self.clients.values() if c.pending is not None]
        for sock in [self.listener, *(c.sock for c in self.clients.values()), *self.spares.values(), *kept]:
            if sock is not None:
                sock.detach()
        keep = channel.fileno()
        os.closerange(0, keep)
        os.closerange(keep + 1, _MAX_FD)
        # Generators seeded at import (numpy's global one) get their own seed, as in a new process.
        sys.modules["numpy.random"].seed()
        if warm:
            _warm_up()  # the pages a tool touches are copied now, not while a launcher waits
        request, fds = _receive_frame(channel)
        if request is None:  # the server is stopping
            os._exit(0)
        channel.close()
        return self._become(request[1], fds)

    def _become(self, request, fds):
        """Take on the launcher's folder, descriptors, limits, environment, argv and name, streams and signals."""
        os.fchdir(fds[-1])
        _place(fds[:-1], request["fds"])
        os.umask(request["umask"])
        import resource

        for r, soft, hard in request["rlimits"]:
            if resource.getrlimit(r) != (soft, hard):
                resource.setrlimit(r, (soft, hard))
        if request["nice"] != os.getpriority(os.PRIO_PROCESS, 0):
            os.setpriority(os.PRIO_PROCESS, 0, request["nice"])
        env = request["env"]
        for key in [k for k in os.environb if k not in env]:
            del os.environb[key]
        for key, value in env.items():
            if os.environb.get(key) != value:
                os.environb[key] = value
        time.tzset()
        import warnings

        warnings._filters_mutated()  # warnings the server saw once are shown again, as in a new process
        sys.argv = request["argv"]
        sys.orig_argv = request["orig_argv"]
        self._name(request["argv"][0], request["orig_argv"])
        sys.stdin, sys.stdout, sys.stderr = (_stdio(fd, *settings) for fd, settings in enumerate(self.stdio))
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        ignored = set(request["ignored"])
        for sig in self.signals:
            wanted = signal.SIG_IGN if sig in ignored else signal.SIG_DFL
            if sig == signal.SIGINT and sig not in ignored:
                wanted = signal.default_int_handler
            if signal.getsignal(sig) != wanted:
                signal.signal(sig, wanted)
        # BLAS threads as the library chose them at start-up, whatever happened since.
        for lib, threads in self.blas:
            if lib.get_num_threads() != threads:
                lib.set_num_threads(threads)
        signal.pthread_sigmask(signal.SIG_SETMASK, request["blocked"])
        return request["entry"]

    def _name(self, script, argv):
        """Show the launcher's command line and name, as a cold start would (ps, /proc/PID/cmdline and comm).

        The command line is written over the server's own, which keeps a
        blank argument for it (and cuts a longer one short).
        """
        import ctypes

        start, end = self.argv_area
        line = b"\0".join(os.fsencode(a) for a in argv)[: end - start - 1]
        ctypes.memmove(start, line.ljust(end - start, b"\0"), end - start)
        self.libc.prctl(_PR_SET_NAME, os.fsencode(os.path.basename(script))[:15], 0, 0, 0)


def _receive(sock):
    """(data, descriptors, truncated) from one read of `sock`; data is None when nothing is ready."""
    try:
        data, ancillary, flags, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 256))
    except (BlockingIOError, InterruptedError):
        return None, [], False
    except OSError:
        return b"", [], False
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
    return data, fds, bool(flags & socket.MSG_CTRUNC)


def _receive_frame(sock):
    """One whole frame and the descriptors sent with it, from a blocking socket; (None, []) at end of file."""
    buf, fds = b"", []
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "little"):
        data, more, _ = _receive(sock)
        fds += more
        if not data:
            return None, fds
        buf += data
    return marshal.loads(buf[4:]), fds


def _within(limit, ceiling):
    return ceiling == -1 or (limit != -1 and limit <= ceiling)  # -1: RLIM_INFINITY


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _place(received, targets):
    """Put the received descriptors at the launcher's numbers; close every other descriptor."""
    top = max([*targets, *(int(n) for n in os.listdir("/proc/self/fd"))]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in received]
    os.closerange(0, top)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target)  # inheritable, as descriptors inherited across exec are
    for fd in moved:
        os.close(fd)


def _stdio(fd, encoding, errors, buffered):
    """A standard stream on `fd` made as Python's start-up makes it (None when the descriptor is closed)."""
    import io

    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return None
    write = fd > 0
    buffering = 0 if write and not buffered else -1
    buf = io.open(fd, "wb" if write else "rb", buffering, closefd=False)
    raw = buf.raw if buffering else buf
    raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]
    line_buffering = buffered and (raw.isatty() or fd == 2)
    stream = io.TextIOWrapper(buf, encoding, errors, "\n", line_buffering, not buffered)
    stream.mode = "w" if write else "r"
    return stream


def _report_setup_failure(error):
    try:
        os.write(2, f"kerash warm: the child could not take over the run: {type(error).__name__}: {error}\n".encode())
    finally:
        os._exit(70)


def exit_status(error):
    """What the interpreter would do at exit after `error` (None, a SystemExit or another exception).

    Mirrors Py_FinalizeEx without tearing the modules down (50 ms with numpy
    and typer loaded): join threads, run atexit functions, flush standard
    output and error (a failed flush makes the status 120).  Returns the exit
    status, or the signal to die of after an uncaught KeyboardInterrupt.
    """
    status, interrupted = 0, False
    if isinstance(error, SystemExit):
        code = error.code
        if isinstance(code, int):
            status = code
        elif code is not None:
            if sys.stderr is not None:
                sys.stderr.write(f"{code}\n")
            status = 1
    elif error is not None:
        sys.excepthook(type(error), error, error.__traceback__)
        status, interrupted = 1, isinstance(error, KeyboardInterrupt)
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except Exception as e:
            status = 120
            if stream is sys.stdout and sys.stderr is not None:
                import traceback

                try:
                    sys.stderr.write(f"Exception ignored in: {stream!r}\n")
                    sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
                    sys.stderr.flush()
                except Exception:
                    pass
    return (status, signal.SIGINT if interrupted else 0)


def run_child(entry, server_path):
    """In a forked child: run the tool as the launcher's cold path would, then exit as the interpreter would.

    The launcher need not wait for the kernel to tear this process down
    (several ms): once every descriptor is closed, as at exit, the child
    reports its status through the server.
    """
    try:
        launch.cold(entry)
        error = None
    except BaseException as e:
        error = e
    status, sig = exit_status(error)
    if sig:
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)
    status &= 0xFF
    os.closerange(0, _MAX_FD)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(launch.REPLY_TIMEOUT)  # a full queue fails at once: the server reports the status on reaping
        sock.connect(server_path)
        launch.send_frame(sock, ("done", status << 8))
    except OSError:  # a stopping server: it reports the status when it reaps this process
        pass
    os._exit(status)


def main():
    """The server process, started by `kerash warm start`: `python -c '…; main()' READY_FD IDLE_SECONDS`.

    Standard input brings the sys.path of a console script (marshal); READY_FD
    takes back "ok PID SOCKET" or "error: WHY".
    """
    ready, idle = int(sys.argv[1]), float(sys.argv[2])
    sys.path[:] = marshal.loads(sys.stdin.buffer.read())
    try:
        server = Server(idle)
    except WarmError as e:
        os.write(ready, f"error: {e}\n".encode())
        sys.exit(1)
    except Exception as e:  # a broken installation: say what broke
        os.write(ready, f"error: the warm server failed to start: {type(e).__name__}: {e}\n".encode())
        sys.exit(1)
    os.write(ready, f"ok {server.pid} {server.path}\n".encode())
    os.close(ready)
    try:
        entry = server.serve()
    except BaseException:
        server.close_listener()  # no stale socket, whatever went wrong
        raise
    if entry is not None:
        run_child(entry, server.path)
