"""The Jupyter kernel manager the headless runs use (``reproduce`` and the notebook tests, through papermill).

Two changes to nbclient's default (``AsyncKernelManager``):

* **CurveZMQ keys for the kernel's TCP sockets** when pyzmq and the kernelspec support them. ipykernel >= 7 warns on
  every start that a kernel over TCP without encryption can be eavesdropped; the remedy it names costs nothing.
* **No lost wake-ups on the shell channel** (the notebook-06 "idle kernel, nbclient waiting forever" hang). While
  a cell runs, nbclient waits for its execute_reply in ``shell_channel.get_msg()``, i.e. ``await socket.poll()``
  on the shell DEALER socket. A cell that writes into an ipywidgets ``Output`` makes nbclient's Output-widget
  mimic send ``comm_msg`` updates on that *same* socket from another task. zmq signals readiness through one
  edge-triggered file descriptor per socket; a send can consume the edge that announced the arriving
  execute_reply, and the asyncio poll then sleeps until its timeout. papermill runs without a cell timeout, so it
  slept forever (with a cell timeout the cell "succeeds" late: the poll's final check finds the reply). Polling in
  half-second slices ends each slice with that check, so a missed edge costs at most half a second.
"""
from __future__ import annotations

import time
from queue import Empty
from typing import Any

SHELL_POLL_SLICE_S = 0.5


def _sliced_shell_channel() -> type:
    from jupyter_client.channels import AsyncZMQSocketChannel

    class SlicedPollChannel(AsyncZMQSocketChannel):
        """``get_msg`` that polls in slices, so a readiness edge consumed by a concurrent send is not waited out."""

        async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
            assert self.socket is not None
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                remaining = SHELL_POLL_SLICE_S if deadline is None else deadline - time.monotonic()
                step = max(0.0, min(SHELL_POLL_SLICE_S, remaining))
                if await self.socket.poll(int(step * 1000)):
                    return await self._recv()
                if deadline is not None and time.monotonic() >= deadline:
                    raise Empty

    return SlicedPollChannel


def kernel_client_class() -> type:
    """nbclient's async kernel client with the sliced-poll shell channel."""
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from traitlets import Type

    class HeadlessKernelClient(AsyncKernelClient):
        shell_channel_class = Type(_sliced_shell_channel())

    return HeadlessKernelClient


def kernel_manager_class() -> type:
    """The kernel manager to pass to papermill (``kernel_manager_class=``): see the module docstring.

    Async, as nbclient's default: a synchronous manager blocks nbclient's event loop, and cell timeouts never fire.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    client = kernel_client_class()

    class HeadlessKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _default_transport_encryption(self) -> str:
            return "auto" if zmq.has("curve") else "disabled"  # "auto": only if the kernelspec declares support

        @default("client_factory")
        def _default_client_factory(self) -> type:
            return client

    return HeadlessKernelManager
