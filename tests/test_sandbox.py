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


def test_a_child_that_dies_is_reported_as_a_crash_and_replaced():
    sandbox = Sandbox("sandbox_targets:make_crasher", {}, time_limit_s=10)
    try:
        assert sandbox.call("a") == "a"
        with pytest.raises(SandboxCrash):
            sandbox.call("crash")
        assert sandbox.call("b") == "b"
    finally:
        sandbox.close()


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
