"""Every executable starts here: the tool runs in a warm server's child when one serves this installation, else cold.

A warm server (`kerash warm start`, see server.py) has imported numpy,
typer and the tools once and forks a child per run.  The launcher sends it
what a cold start would inherit — argv, environment, working folder (as a
descriptor), umask, limits, signal dispositions and mask, and every inherited
file descriptor (SCM_RIGHTS) — then forwards signals and exits with the
child's status, or dies of the child's signal.  Whenever the server says the
run cannot be exact, or there is no server, the tool runs here, cold.

The hand-over has two steps, so that a run happens once: the server answers
"ready" (or "cold"), and starts the run only when the launcher commits with
"go".  A launcher that hears nothing within REPLY_TIMEOUT (a stopped or
swamped server) hangs up and runs cold, leaving no run behind.  During the
run the server acknowledges each forwarded signal; one it does not
acknowledge in time, the launcher delivers to the child itself.

Every import here is paid by every tool start: only modules built into the
interpreter, plus _socket.  KERASH_WARM=0 forces a cold start, KERASH_WARM=1
says on standard error why a run went cold.
"""

import marshal
import os
import sys
import time

import _signal
import _socket

# Frames are a 4-byte little-endian length and a marshal payload.
_HEADER = 4
_MAX_FDS = 250  # the kernel passes at most 253 descriptors in one message
_SI_USER = 0  # si_code of a signal sent by kill()
_SI_KERNEL = 0x80  # si_code of a signal sent by the kernel: the terminal's Ctrl-C, Ctrl-\, Ctrl-Z, hang-up
_STOPS = (_signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU)
_FULL_QUEUE_WAIT = 0.2  # seconds to retry connecting to a server whose queue of connections is full
REPLY_TIMEOUT = 3.0  # seconds to wait for the server to take a run (or answer a control request)
_ACK_TIMEOUT = 2.0  # seconds to wait for the server to acknowledge a forwarded signal
_GROUP_GRACE = 0.2  # seconds a signalling process of the launcher's group is given to show it signals the group
SIGNAL_STALE = 1.0  # the server relays no signal older than this: its launcher has delivered it or soon will


def installation():
    """What a server must share with a launcher: the interpreter and this kerash package folder."""
    return f"{sys.executable}\0{os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}"


def folder_problem(st):
    """What makes a socket folder (its lstat) unsafe to use, or None: it must be a folder of this user's alone."""
    if st.st_mode & 0o170000 != 0o040000:
        return "not a folder"
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        return f"owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}"
    return None


def socket_dir():
    """The folder of the warm servers' sockets: $KERASH_WARM_DIR (an absolute path), else
    $XDG_RUNTIME_DIR/kerash-warm when that runtime folder is the user's alone (mode 0700), else /tmp/kerash-warm-UID."""
    folder = os.environ.get("KERASH_WARM_DIR")
    if folder:
        return folder
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and runtime.startswith("/"):
        try:
            if folder_problem(os.lstat(runtime)) is None:
                return os.path.join(runtime, "kerash-warm")
        except OSError:
            pass
    return f"/tmp/kerash-warm-{os.getuid()}"


def socket_path():
    """This installation's socket: named by a hash of installation(), short enough for sun_path."""
    h = 0xCBF29CE484222325  # FNV-1a, 64 bits: no hashlib import on the start-up path
    for byte in installation().encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(socket_dir(), f"{h:016x}.sock")


def send_frame(sock, obj, fds=()):
    data = marshal.dumps(obj)
    data = len(data).to_bytes(_HEADER, "little") + data
    if fds:
        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        data = data[sent:]
    if data:
        sock.sendall(data)


def recv_frame(sock):
    """The next frame from `sock`, or None at end of file."""
    head = _recv_exact(sock, _HEADER)
    if head is None:
        return None
    body = _recv_exact(sock, int.from_bytes(head, "little"))
    return None if body is None else marshal.loads(body)


def _recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def peer(sock):
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(cred[0:4], sys.byteorder), int.from_bytes(cred[4:8], sys.byteorder)


def connect(path):
    """A socket connected to the server at `path` run by this user, or a string saying why not.

    Only through a folder of this user's alone: another user could have made
    a shared folder first and put a socket of theirs in it.  The socket
    waits at most REPLY_TIMEOUT for each answer.
    """
    if not path.startswith("/"):  # the server runs in /, launchers anywhere
        return f"KERASH_WARM_DIR must be an absolute path, not {os.path.dirname(path)}"
    folder = os.path.dirname(path)
    try:
        problem = folder_problem(os.lstat(folder))
    except (FileNotFoundError, NotADirectoryError):
        return f"no warm server ({path})"
    except OSError as e:
        return f"cannot reach the warm server at {path}: {e.strerror or e}"
    if problem:
        return f"{folder} is not a folder of yours alone ({problem}): its socket is not used"
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT)  # a connection to a full queue fails at once (EAGAIN) rather than wait
    deadline = None
    while True:
        try:
            sock.connect(path)
            break
        except BlockingIOError:
            now = time.monotonic()
            deadline = deadline or now + _FULL_QUEUE_WAIT
            if now < deadline:
                time.sleep(0.01)
                continue
            sock.close()
            return f"the warm server at {path} takes no more connections (its queue is full)"
        except (FileNotFoundError, NotADirectoryError):
            sock.close()
            return f"no warm server ({path})"
        except ConnectionRefusedError:
            sock.close()
            return f"no warm server (stale socket {path})"
        except OSError as e:
            sock.close()
            return f"cannot reach the warm server at {path}: {e.strerror or e}"
    if peer(sock)[1] != os.getuid():
        sock.close()
        return f"{path} is served by another user"
    return sock


def inherited_fds():
    """Descriptors this process inherited: those open without close-on-exec (Python opens its own with it)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # the folder listing's own descriptor, closed by now
            pass
    return sorted(found)


def _catchable():
    return sorted(_signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP})


def _limits(resource):
    return [getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")]


def _proc(read):
    """read() of something in /proc, or None where /proc does not tell (then both sides see None)."""
    try:
        return read()
    except OSError:
        return None


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def identity():
    """What a run must share with the server to behave the same in its child (it compares its own).

    The server reads what the launcher need not pay for: its oom_score_adj and I/O priority.
    """
    cgroup = _proc(lambda: _read("/proc/self/cgroup"))
    status = _proc(lambda: _read("/proc/self/status")) or b""
    # capabilities, no_new_privs and seccomp filters
    privileges = [line for line in status.splitlines() if line.startswith((b"Cap", b"NoNewPrivs", b"Seccomp"))]
    root = os.stat("/")
    return {
        "installation": installation(),
        "version": sys.version,
        "path": sys.path,
        "flags": tuple(sys.flags),
        "xoptions": sys._xoptions,
        "warnoptions": sys.warnoptions,
        "ids": (os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())),
        "root": (root.st_dev, root.st_ino),  # chroot: the files a path names
        # every namespace: mnt, pid, user, net, uts, ipc, cgroup, time, and those of children to come
        "namespaces": {ns: _proc(lambda ns=ns: os.readlink(f"/proc/self/ns/{ns}"))
                       for ns in _proc(lambda: os.listdir("/proc/self/ns")) or ()},
        "personality": _proc(lambda: _read("/proc/self/personality")),  # setarch (only the process may read it)
        "cgroup": cgroup,
        "privileges": privileges,
        "affinity": sorted(os.sched_getaffinity(0)),
        "scheduler": os.sched_getscheduler(0),
    }


def _request(entry, fds, blocked):
    import resource

    mask = os.umask(0)
    os.umask(mask)
    return {
        "entry": entry,
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
        "env": dict(os.environb),
        "fds": fds,
        "umask": mask,
        "ignored": [s for s in _catchable() if _signal.getsignal(s) == _signal.SIG_IGN],
        "blocked": sorted(blocked),
        "rlimits": [(r, *resource.getrlimit(r)) for r in _limits(resource)],
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "identity": identity(),
    }


def _unsafe(fds):
    """Why this run cannot be sent to a server as it is, or None."""
    if len(fds) > _MAX_FDS:
        return f"{len(fds)} open descriptors (at most {_MAX_FDS} can be passed)"
    if "/dev/tty" in sys.argv:
        return "/dev/tty names the controlling terminal, which a warm child does not have"
    if 0 in fds and os.isatty(0):
        try:
            background = os.tcgetpgrp(0) != os.getpgrp()
        except OSError:  # a terminal that is not ours: no job control applies
            background = False
        if background:
            return "standard input is the terminal of a background job"
    return None


def warm(entry):
    """Run the tool in a warm child and exit with its status; return why not when it must run cold."""
    if entry == "kerash" and sys.argv[1:2] == ["warm"]:
        return "kerash warm manages the server itself"
    if os.environ.get("KERASH_DEBUG"):
        return "KERASH_DEBUG is set (a warm traceback would show the server's frames)"
    try:
        fds = inherited_fds()
    except OSError as e:
        return f"cannot list the open descriptors in /proc: {e.strerror}"
    reason = _unsafe(fds)
    if reason:
        return reason
    sock = connect(socket_path())
    if isinstance(sock, str):
        return sock
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        sock.close()
        return f"cannot open the working folder: {e.strerror}"
    forwarded = [s for s in _catchable() if s != _signal.SIGCHLD and _signal.getsignal(s) != _signal.SIG_IGN]
    # Blocked from now on: the signal thread below collects them once the child runs.  Until then they wait,
    # REPLY_TIMEOUT at most, and kill a launcher that runs cold.
    blocked = _signal.pthread_sigmask(_signal.SIG_BLOCK, forwarded)
    try:
        send_frame(sock, ("run", _request(entry, fds, blocked)))
        reply = recv_frame(sock)
    except TimeoutError:
        reply = ("cold", f"the warm server did not answer within {REPLY_TIMEOUT:g} s")
    except (OSError, ImportError) as e:  # reading /proc or loading resource (ulimit -n), or the server went away
        reply = ("cold", f"cannot hand the run over: {getattr(e, 'strerror', None) or e}")
    if reply is not None and reply[0] == "ready":
        try:
            sock.settimeout(None)  # a run takes its time
            # Committed: from here on the run is the server's child's.  The descriptors go only now: a server
            # stopped before would hold them, and a pipe this launcher writes would not end when it exits.
            send_frame(sock, ("go",), fds + [cwd])
        except OSError:  # the server is gone, and no child got the run
            reply = None
    os.close(cwd)
    if reply is None or reply[0] != "ready":
        sock.close()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, blocked)
        return reply[1] if reply else "the warm server closed the connection"
    _wait(sock, forwarded, reply[1])


def _group_sender(pid, sig):
    """Whether `sig` from process `pid` was, by all signs, sent to the launcher's whole process group: the sender is
    in that group and ignores the signal itself, as timeout(1) does before it signals its group.

    timeout(1) signals the tool first and ignores the signal only then: a sender in the group is watched a
    moment (_GROUP_GRACE) for that, or the launcher could end with the child before the group signal came.
    """
    try:
        if pid <= 0 or pid == os.getpid() or os.getpgid(pid) != os.getpgrp():
            return False
    except OSError:
        return False
    deadline = time.monotonic() + _GROUP_GRACE
    while True:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"SigIgn:"):
                        if int(line[7:], 16) >> (sig - 1) & 1:
                            return True
                        break
        except (OSError, ValueError):
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)


def _forward(sock, forwarded, run):
    """Signal thread: pass each signal on to the child, or to its process group where a cold tool's would get it.

    The group gets what the terminal sends (Ctrl-C, Ctrl-\\, Ctrl-Z,
    hang-up), SIGCONT, and what was sent to the launcher's own process
    group; `kill PID` reaches the tool alone.  A signal the server does not
    acknowledge in time (it is stopped), the launcher delivers itself.
    """
    import _thread

    while True:
        info = _signal.sigwaitinfo(forwarded)
        sig = info.si_signo
        group = (sig == _signal.SIGCONT or info.si_code == _SI_KERNEL
                 or (info.si_code == _SI_USER and _group_sender(info.si_pid, sig)))
        answer = _thread.allocate_lock()
        answer.acquire()  # released by the main thread when the acknowledgement comes
        run["seq"] += 1
        run["waiting"] = (run["seq"], answer)
        try:
            send_frame(sock, ("sig", sig, group, run["seq"], time.monotonic()))
        except OSError:
            return
        acknowledged = answer.acquire(timeout=_ACK_TIMEOUT)
        run["waiting"] = None
        if not acknowledged or run["ack"] == "stale":
            _deliver(run, sig, group)
        if sig in _STOPS:
            # The child stopped; so does the launcher, for the shell to see a stopped job.
            os.kill(os.getpid(), _signal.SIGSTOP)


def _deliver(run, sig, group):
    """Signal the child, or its group, without the server; then watch for its end, which the server may not report."""
    import _thread

    try:
        _signal.pidfd_send_signal(run["pidfd"], 0)  # fails once the server has reaped it: its pid may be another's
        if group:
            os.killpg(run["pid"], sig)
        else:
            _signal.pidfd_send_signal(run["pidfd"], sig)
    except (OSError, TypeError):  # TypeError: no pidfd (an old kernel)
        return
    if not run["watching"]:
        run["watching"] = True
        _thread.start_new_thread(_watch, (run,))


def _watch(run):
    """The child's end, from /proc, while its stopped server cannot reap it: the main thread exits with its status."""
    while True:
        time.sleep(0.05)
        try:
            _signal.pidfd_send_signal(run["pidfd"], 0)
            with open(f"/proc/{run['pid']}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:  # reaped: the server runs again and reports the end itself
            return
        if fields[0] in (b"Z", b"X") and len(fields) > 49:  # proc(5): state is field 3, exit_code field 52
            run["status"] = int(fields[49])
            run["sock"].shutdown(_socket.SHUT_RD)  # wakes the main thread
            return


def _child(run, pid):
    """The child that runs the tool: its pid, and a pidfd that names it even once the pid is reused."""
    if run.get("pidfd") is not None:
        os.close(run["pidfd"])
    run["pid"] = pid
    try:
        run["pidfd"] = os.pidfd_open(pid)
    except (OSError, AttributeError):
        run["pidfd"] = None


def _wait(sock, forwarded, pid):
    import _thread

    run = {"sock": sock, "seq": 0, "waiting": None, "ack": None, "watching": False, "status": None}
    _child(run, pid)
    _thread.start_new_thread(_forward, (sock, forwarded, run))
    while True:
        try:
            frame = recv_frame(sock)
        except OSError:
            frame = None
        if frame is None:
            if run["status"] is not None:
                _exit_as(run["status"])
            if sys.stderr is not None:
                sys.stderr.write(f"{os.path.basename(sys.argv[0])}: error: the warm server ended during the run\n")
                sys.stderr.flush()
            os._exit(1)
        kind = frame[0]
        if kind == "exit":
            _exit_as(frame[1])
        elif kind == "ack":
            waiting = run["waiting"]
            if waiting and waiting[0] == frame[1]:
                run["ack"] = frame[2]
                waiting[1].release()
        elif kind == "child":  # the child first chosen was gone: another one runs the tool
            _child(run, frame[1])
        elif kind == "error":
            if sys.stderr is not None:
                sys.stderr.write(f"{os.path.basename(sys.argv[0])}: error: {frame[1]}\n")
            os._exit(1)


def _exit_as(status):
    """Exit with a child's wait status: the same code, or death by the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if os.WCOREDUMP(status):
            import resource

            # The child left its core; the launcher leaves none.
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP):
            _signal.signal(sig, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [sig])
        _signal.raise_signal(sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def cold(entry):
    """Run the tool in this process, as every tool ran before the warm server."""
    if entry == "kerash":
        from ..cli.main import main as front_end

        front_end()
    else:
        from ..cli.catalog import load

        load(entry).main()


def main(entry):
    """The entry point of every executable (scripts/NAME calls main("NAME"))."""
    mode = os.environ.get("KERASH_WARM")
    if mode != "0":
        reason = warm(entry)
        if mode == "1" and sys.stderr is not None:
            sys.stderr.write(f"{entry}: cold start: {reason}\n")
    cold(entry)
