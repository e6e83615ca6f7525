"""``python kill_during_save.py N ARGS...``: ``pixelwise ARGS`` in this process, which kills
itself with SIGKILL halfway through writing its N-th checkpoint (as the OOM killer or a power cut
would: no handler, no cleanup). Used by test_faults.py."""

import io
import os
import signal
import sys

import torch

from pixelwise.cli.main import main

real_save = torch.save
calls = 0


def dying_save(obj, file, *args, **kwargs):
    global calls
    calls += 1
    if calls < int(sys.argv[1]):
        return real_save(obj, file, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    file.write(data[: len(data) // 2])
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    torch.save = dying_save
    sys.exit(main(sys.argv[2:]))
