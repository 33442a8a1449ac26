"""train.allocator: the pinned mmap threshold keeps large buffers off the heap after a large free."""
import subprocess
import sys

import pytest

from train import allocator, errors

PROBE = r'''
import ctypes, sys
from train import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
pinned = allocator.pin_mmap_threshold() if sys.argv[1] == "pin" else False
libc.free(libc.malloc(4 << 20))  # glibc raises a dynamic threshold past 4 MiB here
before = libc.mallinfo2().hblks
buffer = libc.malloc(4 << 20)
print(pinned, libc.mallinfo2().hblks - before)  # 1: the new 4 MiB buffer is its own mmap
'''


def probe(mode: str, env: dict | None = None) -> str:
    import os
    run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return run.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_pinned_threshold_keeps_a_large_buffer_on_mmap_after_a_large_free():
    assert probe("none") == "False 0"  # glibc's dynamic threshold: the buffer comes from the heap
    assert probe("pin") == "True 1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_a_threshold_from_the_environment_is_left_alone():
    assert probe("pin", {allocator.ENV_VAR: str(64 << 20)}) == "False 0"  # the user's 64 MiB holds


def test_the_command_line_tools_pin_it_at_start_up(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "pin_mmap_threshold", lambda: calls.append(True))
    monkeypatch.setattr(sys, "argv", ["tool"])
    with pytest.raises(SystemExit) as exit_:
        errors.run_app(lambda argv: None)
    assert exit_.value.code == 0 and calls == [True]
