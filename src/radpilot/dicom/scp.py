"""The DICOM receiver: a pynetdicom SCP for C-ECHO and C-STORE.

Every storage SOP class is accepted in every transfer syntax pynetdicom knows (implicit and
explicit little endian, deflate, big endian, JPEG baseline/extended/lossless, JPEG-LS,
JPEG 2000, HTJ2K, RLE, MPEG/HEVC video). The C-STORE handler never decodes pixel data: it
hands the bytes exactly as received to the :class:`~radpilot.dicom.intake.Intake`, which
answers success only once the file is on disk.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from io import BytesIO
from typing import Any, ClassVar, cast

from pydicom._uid_dict import UID_dictionary
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Verification,
    register_uid,
    uid_to_service_class,
)
from pynetdicom.transport import ThreadedAssociationServer

from radpilot.core.settings import Settings
from radpilot.dicom.acceptor import SupportedContexts, handler_class
from radpilot.dicom.inbound import received_file
from radpilot.dicom.intake import Arrival, Intake
from radpilot.dicom.status import Status
from radpilot.dicom.writing import part10

__all__ = ["Receiver", "storage_sop_classes"]

log = logging.getLogger(__name__)


def storage_sop_classes() -> list[str]:
    """Every storage SOP class, retired and trial ones included.

    pynetdicom's list leaves out retired classes, but archives hold old studies (e.g.
    Ultrasound Image Storage (Retired), still sent by older modalities), so radpilot also
    accepts every composite "Storage" class in pydicom's UID dictionary.
    """
    classes = {str(context.abstract_syntax) for context in AllStoragePresentationContexts}
    for uid, (name, kind, _info, _retired, keyword) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name:
            continue
        if not uid.startswith("1.2.840.10008.5.1.4.") or uid in classes:
            continue
        if uid_to_service_class(uid) is not StorageServiceClass:
            # pynetdicom aborts associations that use a class it cannot map to a
            # service, so the retired ones are registered as storage classes.
            register_uid(uid, keyword, StorageServiceClass)
        classes.add(uid)
    return sorted(classes)


class _AllowListServer(ThreadedAssociationServer):
    """Closes connections from hosts outside the allow-list before any DICOM is read."""

    allowed: ClassVar[list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    reuse_port: ClassVar[bool] = False  # several receiver processes share the port

    def server_bind(self) -> None:
        if self.reuse_port and self.socket is not None:
            # Linux spreads new connections over every socket bound with SO_REUSEPORT.
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def verify_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> bool:
        if not self.allowed:
            return True
        host = ipaddress.ip_address(client_address[0])
        if any(host in network for network in self.allowed):
            return True
        log.warning(
            "refused a connection from %s: host not in RADPILOT_ALLOWED_HOSTS", client_address[0]
        )
        return False


class Receiver:
    """A running C-STORE SCP bound to ``settings.dicom_host:settings.dicom_port``.

    Parameters
    ----------
    settings
        AE title, port, allow-lists, PDU size, timeouts, association limit.
    intake
        Where received objects go.
    """

    def __init__(self, settings: Settings, intake: Intake) -> None:
        self.settings = settings
        self.intake = intake
        self.ae = self._build_ae()
        self._server: _AllowListServer | None = None
        self._thread: threading.Thread | None = None

    def _build_ae(self) -> AE:
        s = self.settings
        # pynetdicom's "standard" handlers format a debug or info line for every PDU and
        # DIMSE message, which radpilot's cap on pynetdicom's logger (WARNING, as its
        # debug lines may hold patient data) then drops: about 2 % of a CT slice's C-STORE.
        pynetdicom_config.LOG_HANDLER_LEVEL = "none"
        ae = AE(ae_title=s.ae_title)
        ae.maximum_pdu_size = s.max_pdu_size
        ae.maximum_associations = s.max_associations
        ae.network_timeout = s.network_timeout
        ae.acse_timeout = s.network_timeout
        ae.dimse_timeout = s.network_timeout
        ae.require_calling_aet = list(s.allowed_calling_aets)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for sop_class in storage_sop_classes():
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        return ae

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful when configured as 0)."""
        if self._server is None:
            raise RuntimeError("the receiver is not running; call start() first")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind the port and serve associations on background threads.

        Raises
        ------
        OSError
            If the port cannot be bound (in use, or privileged).
        """
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_ACCEPTED, _on_accepted),
            (evt.EVT_REJECTED, _on_rejected),
            (evt.EVT_ABORTED, _on_aborted),
        ]
        server_class = type(
            "RadpilotServer",
            (_AllowListServer,),
            {
                "allowed": [
                    ipaddress.ip_network(h, strict=False) for h in self.settings.allowed_hosts
                ],
                "reuse_port": self.settings.receiver_processes > 1,
            },
        )
        server = cast(
            _AllowListServer,
            self.ae.make_server(
                (self.settings.dicom_host, self.settings.dicom_port),
                evt_handlers=handlers,
                server_class=server_class,
                request_handler=handler_class(poll_delay=self.settings.dicom_poll_delay),
            ),
        )
        # Copied per association; see SupportedContexts for why not by deepcopy.
        server.contexts = SupportedContexts(server.contexts)
        # As AE.start_server(block=False) does: the AE tracks its servers so that
        # AE.shutdown() and server.shutdown() agree (pynetdicom has no public hook for a
        # custom server class in start_server).
        self.ae._servers.append(server)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="radpilot-dicom-acceptor", daemon=True
        )
        self._thread.start()
        log.info(
            "DICOM receiver %s listening on %s:%d",
            self.settings.ae_title,
            self.settings.dicom_host,
            self.port,
        )

    def stop(self) -> None:
        """Stop accepting, let running associations end, and close the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _on_store(self, event: evt.Event) -> int:
        requestor = event.assoc.requestor
        calling = str(requestor.ae_title).strip()
        request = cast(C_STORE, event.request)
        try:
            data = received_file(request.DataSet) or part10(
                cast(BytesIO, request.DataSet).getvalue(),
                str(request.AffectedSOPClassUID),
                str(request.AffectedSOPInstanceUID),
                str(event.context.transfer_syntax),
                calling,
            )
        except (ValueError, AttributeError, TypeError, UnicodeEncodeError) as exc:
            log.warning("C-STORE from %s: file meta could not be built: %s", calling, exc)
            return int(Status.CANNOT_UNDERSTAND)
        arrival = Arrival(
            data=data,
            source="dicom",
            origin=f"{calling}@{requestor.address}",
            calling_ae_title=calling[:16],
            expected_sop_class_uid=str(request.AffectedSOPClassUID),
            expected_sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
        return int(self.intake.accept(arrival).status)


def _on_echo(event: evt.Event) -> int:
    return int(Status.SUCCESS)


def _on_accepted(event: evt.Event) -> None:
    requestor = event.assoc.requestor
    log.info(
        "association accepted from %s (%s)", str(requestor.ae_title).strip(), requestor.address
    )


def _on_rejected(event: evt.Event) -> None:
    requestor = event.assoc.requestor
    log.warning(
        "association rejected from %s (%s): calling AE title not allowed "
        "or association limit reached",
        str(requestor.ae_title).strip(),
        requestor.address,
    )


def _on_aborted(event: evt.Event) -> None:
    log.warning("association from %s aborted", event.assoc.requestor.address)
