"""`kerash warm start|stop|status`: the warm tool server (server.py)."""

import os
import sys
from typing import Annotated

import typer

from ..cli.runner import tool


def _duration(text):
    """Seconds in '900', '90s', '15m' or '2h'."""
    from ..errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = -1
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"--idle wants a duration such as 900, 90s, 15m or 2h, not {text!r}")
    return seconds


def _query(frame):
    """Send a control frame to this installation's server: (reply, socket) or (None, why not)."""
    from . import launch

    path = launch.socket_path()
    sock = launch.connect(path)
    if isinstance(sock, str):
        return None, sock
    try:
        launch.send_frame(sock, frame)
        reply = launch.recv_frame(sock)
    except OSError:
        reply = None
    if reply is None:  # a server on its way out, or stopped (kill -STOP)
        sock.close()
        return None, f"no answer from the warm server at {path}"
    return reply, sock


def _describe(status):
    minutes, seconds = divmod(int(status["uptime"]), 60)
    idle = f"idle exit after {status['idle']:g} s" if status["idle"] else "no idle exit"
    return (f"running: pid {status['pid']}, socket {status['socket']}, up {minutes}m{seconds:02d}s, "
            f"{status['served']} runs served, {status['running']} running, {idle}")


def _start(idle):
    import marshal
    import subprocess

    from ..errors import KerashError, UsageError
    from .launch import socket_dir

    if not os.path.isabs(socket_dir()):  # the server runs in /, launchers anywhere
        raise UsageError(f"KERASH_WARM_DIR must be an absolute path, not {socket_dir()}")
    reply, sock = _query(("status",))
    if reply:
        sock.close()
        print(f"kerash warm: already {_describe(reply[1])}")
        return 0
    ready_r, ready_w = os.pipe()
    # The last argument, blank, leaves room for the command lines of its children (ps, /proc/PID/cmdline).
    server = subprocess.Popen(
        [sys.executable, "-c", "from kerash.warm.server import main; main()", str(ready_w), repr(idle), " " * 4096],
        pass_fds=(ready_w,), start_new_session=True, cwd="/",
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(ready_w)
    # The server's sys.path is a console script's, as the launchers' that it compares with its own.
    server.stdin.write(marshal.dumps(sys.path))
    server.stdin.close()
    with os.fdopen(ready_r, "rb") as f:
        answer = f.read().decode().strip()
    if not answer.startswith("ok "):
        reply, sock = _query(("status",))
        if reply:  # another start won the race
            sock.close()
            print(f"kerash warm: already {_describe(reply[1])}")
            return 0
        raise KerashError(answer.removeprefix("error: ") or "the warm server failed to start")
    _, pid, path = answer.split(" ", 2)
    print(f"kerash warm: started, pid {pid}, socket {path}")
    return 0


def _stop():
    reply, sock = _query(("stop",))
    if not reply:
        print(f"kerash warm: no server was running ({sock})")
        return 0
    # The server closes the connection as it exits, after its running tools have ended.
    sock.settimeout(None)
    while sock.recv(64):
        pass
    sock.close()
    print(f"kerash warm: stopped pid {reply[1]}")
    return 0


def _status():
    reply, sock = _query(("status",))
    if not reply:
        print(f"not running: {sock}")
        return 1
    sock.close()
    print(_describe(reply[1]))
    return 0


@tool("warm")
def warm(
    action: Annotated[str, typer.Argument(metavar="start|stop|status", help="Start the server, stop it, or say whether it runs.", show_default=False)],
    idle: Annotated[str, typer.Option("--idle", metavar="DURATION", help="With start: exit after this long without a run (900, 90s, 15m, 2h; 0: never).")] = "15m",
):
    """Start, stop or query this installation's warm tool server, which makes every tool start in tens of milliseconds.

    While it runs, each tool hands its run to a process forked from the
    server, which has imported numpy, typer and the tools already; the run
    behaves exactly as a cold start (same descriptors, folder, environment,
    signals and exit status).  KERASH_WARM=0 makes tools start cold,
    KERASH_WARM=1 says why a run started cold.  The socket lives in
    $KERASH_WARM_DIR, by default $XDG_RUNTIME_DIR/kerash-warm (when that
    folder is yours alone) or /tmp/kerash-warm-UID; a folder that is not
    yours alone (mode 0700) is never used.  status exits 1 when no server
    runs.

    \b
    Example:
      kerash warm start --idle 10m && kerash warm status && kerash warm stop
    """
    from ..errors import UsageError

    if action == "start":
        return _start(_duration(idle))
    if action == "stop":
        return _stop()
    if action == "status":
        return _status()
    raise UsageError(f"unknown action {action!r}: start, stop or status")
