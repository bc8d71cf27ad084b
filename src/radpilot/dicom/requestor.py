"""Keep a requestor association's reactor from taking the responses its sender waits for.

pynetdicom runs a reactor thread on requestor associations too. Before ``send_c_store``
sends, it clears the reactor's checkpoint and waits until the reactor reports itself
paused; but the reactor sets that flag *before* it waits on the checkpoint, so it can be
seen paused, pass the still-set checkpoint, and then take the next decoded message off
the queue. When that message is the C-STORE response, the reactor drops it ("Received
unexpected C-STORE service message"), the sender times out waiting for it and the
association is aborted. Seen here with a sender and the receiver in one busy process
(the demo replay in CI), rarely.

:class:`ResponseKeepingDIMSEProvider` makes the reactor's non-blocking look leave
responses in the queue for the ``get_msg(block=True)`` of the call waiting for them; it
still hands the reactor requests (a peer's C-ECHO, C-STORE sub-operations of C-GET).
"""

from __future__ import annotations

from typing import Any

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider

__all__ = ["ResponseKeepingDIMSEProvider", "keep_responses"]


class ResponseKeepingDIMSEProvider(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider whose non-blocking ``get_msg`` skips responses."""

    def get_msg(self, block: bool = False) -> Any:
        """The next message; without ``block``, only if it is a request (else nothing)."""
        if block:
            return super().get_msg(block=True)
        queue = self.msg_queue
        with queue.mutex:
            if not queue.queue:
                return None, None
            _, msg = queue.queue[0]
            if msg is None or not msg.is_valid_request:
                return None, None  # a response: its caller's blocking get takes it
        return super().get_msg(block=False)


def keep_responses(assoc: Association) -> Association:
    """Apply :class:`ResponseKeepingDIMSEProvider` to a requestor ``assoc``; returns it."""
    if type(assoc.dimse) is DIMSEServiceProvider:
        assoc.dimse.__class__ = ResponseKeepingDIMSEProvider
    return assoc
