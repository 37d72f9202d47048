"""The sandbox kills a call that runs past its limit, survives a dying child, and reports errors per call."""

import time

import pytest

from stages.sandbox import Sandbox, SandboxCrash, SandboxError, SandboxStartError, SandboxTimeout


def test_a_call_over_the_limit_is_killed_and_the_next_call_works():
    sandbox = Sandbox("sandbox_targets:make_sleeper", {}, time_limit_s=0.5)
    try:
        assert sandbox.call(0, "warm") == "warm"
        started = time.monotonic()
        with pytest.raises(SandboxTimeout):
            sandbox.call(30, "stuck")
        assert time.monotonic() - started < 5
        assert sandbox.call(0, "after") == "after"
        assert sandbox.restarts == 1
    finally:
        sandbox.close()


def test_a_child_that_dies_twice_on_a_document_is_reported_as_a_crash_and_replaced():
    sandbox = Sandbox("sandbox_targets:make_crasher", {}, time_limit_s=10)
    try:
        assert sandbox.call("a") == "a"
        with pytest.raises(SandboxCrash, match="twice"):
            sandbox.call("crash")
        assert sandbox.restarts == 2  # one fresh child for the second try, one after it
        assert sandbox.call("b") == "b"
    finally:
        sandbox.close()


def test_a_transient_crash_is_tried_once_more_in_a_fresh_child(tmp_path):
    sandbox = Sandbox("sandbox_targets:make_crasher", {}, time_limit_s=10)
    try:
        value = f"crash once:{tmp_path / 'crashed'}"
        assert sandbox.call(value) == value
        assert sandbox.restarts == 1 and (tmp_path / "crashed").exists()
    finally:
        sandbox.close()


PARENT_THAT_DIES = """
import os, signal, sys, threading, time
sys.path[:0] = sys.argv[1:]
from stages.sandbox import Sandbox
sandbox = Sandbox("sandbox_targets:make_sleeper", {}, time_limit_s=60)
assert sandbox.call(0, "ready") == "ready"
threading.Thread(target=sandbox.call, args=(30, "busy"), daemon=True).start()  # the child is busy for 30 s
time.sleep(0.5)
print(sandbox._process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_child_dies_with_its_parent():
    """A worker killed (for running past its unit's time limit, say) while its child works on a page leaves no
    child behind."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    parent = subprocess.run([sys.executable, "-c", PARENT_THAT_DIES, str(tests), str(tests.parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
    child = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_an_exception_in_the_function_is_returned_with_its_type_and_the_child_lives_on():
    sandbox = Sandbox("sandbox_targets:make_crasher", {}, time_limit_s=10)
    try:
        with pytest.raises(SandboxError) as raised:
            sandbox.call("raise")
        assert raised.value.kind == "ValueError"
        assert "bad document" in raised.value.message
        assert sandbox.call("c") == "c"
        assert sandbox.restarts == 0
    finally:
        sandbox.close()


def test_a_function_that_cannot_be_built_fails_the_stage_not_a_document():
    sandbox = Sandbox("sandbox_targets:make_broken", {}, time_limit_s=10)
    with pytest.raises(SandboxStartError, match="a required model is missing"):
        sandbox.call()
