"""Runs a command on a pseudo-terminal, as a person's shell would, and
presses Ctrl-C once the command has printed MARKER. Run by cli_habits.rs:
python pty_interrupt.py MARKER COMMAND [ARGS...]. Prints what the command
wrote to its terminal, then a last line `exit=N` (its exit status, or
`signal=N` if a signal ended it)."""

import os
import pty
import select
import sys
import time

marker = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])

seen = b""
pressed = False
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 1.0)
    if not ready:
        continue
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # the command ended: the terminal is closed
        break
    if not chunk:
        break
    seen += chunk
    if not pressed and marker in seen:
        # What the terminal does with the key: SIGINT to the foreground
        # process group, through the line discipline.
        os.write(fd, b"\x03")
        pressed = True

_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.stdout.write("\npressed=%s\n" % pressed)
if os.WIFEXITED(status):
    sys.stdout.write("exit=%d\n" % os.WEXITSTATUS(status))
else:
    sys.stdout.write("signal=%d\n" % os.WTERMSIG(status))
