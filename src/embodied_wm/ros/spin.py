"""Start-up and shutdown of our node processes: SIGINT/SIGTERM become one shutdown request, and the
main thread winds everything down in order, so a node exits 0 without a traceback however often and
whenever it is signalled.

Why not rclpy's own signal handlers: on a signal they shut the context down at once (from rclpy's
signal thread) while our threads may still be publishing, logging or waiting on a service future, and
then chain to Python's SIGINT handler, which raises KeyboardInterrupt wherever the main thread happens
to be. That gave tracebacks inside destroy calls, "publisher's context is invalid" from the inference
thread, done callbacks without a result, and a segfault when rclpy finalized logging under a thread
that was still logging. Here a signal only sets a flag. The main thread spins with a short timeout,
sees the flag within ``POLL_S``, stops its other threads, destroys its nodes and shuts the context
down last. More signals change nothing: a terminal Ctrl-C reaches the whole process group and
``ros2 launch`` forwards another SIGINT (then SIGTERM after its timeout), so two or three arrive.

A signal during start-up (imports, model loading) is honoured when the current start-up step ends:
the process then skips the remaining steps and exits 0. Only this module installs the handlers:
executables call :func:`install_signal_handlers` first thing, before their heavy imports, and
:func:`init` passes ``SignalHandlerOptions.NO`` to rclpy.

This module imports only the standard library at import time (rclpy lazily), so installing the
handlers costs nothing measurable.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

#: How long the main thread's executor waits before it looks at the shutdown flag again (s). A Python
#: signal handler runs only when the main thread is back in Python, not inside rcl_wait.
POLL_S = 0.1
#: Signals that request a shutdown.
SHUTDOWN_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class ShutdownRequest:
    """Set once by SIGINT/SIGTERM (or by the node itself); never raises, never undone."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self.reason = ""
        self.signals_received = 0

    def install(self) -> None:
        """Route SIGINT and SIGTERM here. Idempotent; must run in the main thread (Python's rule)."""
        for sig in SHUTDOWN_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals_received += 1
        self.request(signal.Signals(signum).name)

    def request(self, reason: str) -> None:
        """Ask the process to shut down; the first reason is kept. Callbacks run once, in the caller's
        thread (the main thread for a signal), so they must only set flags."""
        if self._event.is_set():
            return
        self.reason = reason
        self._event.set()
        for callback in list(self._callbacks):
            callback()

    def on_request(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when shutdown is requested (at once if it already was)."""
        self._callbacks.append(callback)
        if self._event.is_set():
            callback()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until shutdown is requested or ``timeout`` passes; True if requested."""
        return self._event.wait(timeout)


#: The process's one shutdown request (signal handlers are per process).
SHUTDOWN = ShutdownRequest()


def install_signal_handlers() -> ShutdownRequest:
    """Install the SIGINT/SIGTERM handlers (idempotent) and return the process's shutdown request."""
    SHUTDOWN.install()
    return SHUTDOWN


def init(args: Sequence[str]) -> ShutdownRequest:
    """``rclpy.init`` for a node process: our signal handlers, not rclpy's (see the module docstring)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    shutdown = install_signal_handlers()
    rclpy.init(args=list(args), signal_handler_options=SignalHandlerOptions.NO)
    return shutdown


def spin_until_shutdown(executor: Any, until: Callable[[], bool] | None = None) -> None:
    """Run ``executor``'s callbacks in this (the main) thread until shutdown is requested, ``until()``
    is true, or the context is shut down."""
    while not SHUTDOWN.requested and executor.context.ok() and not (until is not None and until()):
        executor.spin_once(timeout_sec=POLL_S)


def shutdown_context() -> None:
    """Shut the default context down: the last step, when no other thread uses ROS or its logging.
    Then ignore further SIGINT/SIGTERM (see :func:`ignore_further_signals`)."""
    import rclpy

    rclpy.try_shutdown()
    ignore_further_signals()


def ignore_further_signals() -> None:
    """The orderly shutdown is done: a late signal must not cut the interpreter's exit short. Python
    resets handlers it installed to the default action while it finalizes (which here still tears
    down DDS participants and native libraries), so a second Ctrl-C landing there would kill the
    process with -SIGINT; an ignored signal stays ignored."""
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def quietly(name: str, what: str, step: Callable[[], Any]) -> None:
    """Run one clean-up step; a failure is one line on stderr, never a traceback that hides the rest."""
    try:
        step()
    except Exception as exc:  # clean-up goes on whatever one step raised
        print(f"{name}: shutdown: {what}: {type(exc).__name__}: {exc}", file=sys.stderr)


def spin_node(make_node: Callable[[], Any], name: str, argv: Sequence[str] | None = None) -> int:
    """The ``main()`` body of our simple (non-lifecycle) nodes: init, spin until SIGINT/SIGTERM, clean
    shutdown (exit 0), and a one-line error with exit status 2 for bad parameters instead of a
    traceback. The node's ``destroy_node`` releases its own resources."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    shutdown = init(sys.argv if argv is None else [name, *argv])
    node = None
    executor = SingleThreadedExecutor()
    rc = 0
    try:
        if not shutdown.requested:  # signalled while importing: skip the (possibly slow) construction
            node = make_node()
            executor.add_node(node)
            spin_until_shutdown(executor)
    except ExternalShutdownException:
        pass
    except ValueError as exc:  # parameter validation
        print(f"{name}: {exc}", file=sys.stderr)
        rc = 2
    finally:
        if node is not None:
            quietly(name, "destroy node", node.destroy_node)
        quietly(name, "executor", lambda: executor.shutdown(timeout_sec=1.0))
        shutdown_context()
    return rc
