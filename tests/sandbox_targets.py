"""Functions run inside the sandbox child by tests/test_sandbox.py (the child imports them by name)."""

import os
import signal
import time


def make_sleeper():
    def sleep_then_echo(seconds: float, value):
        time.sleep(seconds)
        return value

    return sleep_then_echo


def make_crasher():
    def crash_on(value):
        if value == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(value, str) and value.startswith("crash once:"):  # dies the first time only: a transient crash
            flag = value.split(":", 1)[1]
            if not os.path.exists(flag):
                open(flag, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
        if value == "raise":
            raise ValueError("bad document")
        return value

    return crash_on


def make_broken():
    raise ImportError("a required model is missing")
