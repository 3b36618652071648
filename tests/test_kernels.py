"""The headless kernel manager (tal_kit/kernels.py): the shell channel survives a lost readiness edge (the
notebook-06 hang), and the manager is the async one nbclient expects, with Curve keys when they can be had."""
from __future__ import annotations

import asyncio

import pytest

from tal_kit import kernels


class LostEdgeSocket:
    """A socket whose reply is already queued but whose readiness edge was consumed by a send: a poll without a
    timeout never wakes, a poll with one finds the message in its final check (as pyzmq's asyncio poll does)."""

    def __init__(self):
        self.polls: list = []

    async def poll(self, timeout_ms=None):
        self.polls.append(timeout_ms)
        if timeout_ms is None:
            await asyncio.Event().wait()  # no edge: sleeps forever
        await asyncio.sleep(0)
        return 1


def _channel(cls):
    channel = cls.__new__(cls)  # the socket is a stand-in: skip the zmq.asyncio type check of __init__
    channel.socket = LostEdgeSocket()

    async def recv():
        return {"msg_type": "execute_reply"}

    channel._recv = recv
    return channel


def test_the_stock_channel_waits_forever_for_a_reply_that_is_there():
    from jupyter_client.channels import AsyncZMQSocketChannel

    channel = _channel(AsyncZMQSocketChannel)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(asyncio.wait_for(channel.get_msg(timeout=None), 1.0))


def test_the_sliced_channel_gets_it_within_one_slice():
    channel = _channel(kernels._sliced_shell_channel())
    reply = asyncio.run(asyncio.wait_for(channel.get_msg(timeout=None), 5.0))
    assert reply == {"msg_type": "execute_reply"}
    assert channel.socket.polls == [int(kernels.SHELL_POLL_SLICE_S * 1000)]


def test_the_sliced_channel_keeps_the_timeout():
    from queue import Empty

    class Silent(LostEdgeSocket):
        async def poll(self, timeout_ms=None):
            self.polls.append(timeout_ms)
            await asyncio.sleep(timeout_ms / 1000)
            return 0

    channel = _channel(kernels._sliced_shell_channel())
    channel.socket = Silent()
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=1.2))
    assert len(channel.socket.polls) >= 3 and max(channel.socket.polls) <= 500  # 1.2 s in half-second slices


def test_the_manager_is_async_and_hands_out_the_sliced_client():
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    manager = kernels.kernel_manager_class()()
    assert isinstance(manager, AsyncKernelManager)
    client = manager.client()  # what nbclient does after starting the kernel
    assert client.shell_channel_class.__name__ == "SlicedPollChannel"
    assert manager.transport_encryption == ("auto" if zmq.has("curve") else "disabled")
