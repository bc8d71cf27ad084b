"""A minimal pynetdicom C-STORE receiver that only writes files: pynetdicom's ceiling.

It accepts every storage SOP class with pynetdicom's default transfer syntaxes and writes
each dataset, as received, to ``OUT/<SOP Instance UID>.dcm`` (no fsync, no parsing, no
index) before answering Success. ``bench.cstore --receivers pynetdicom`` measures it next to
``radpilot serve``, so that radpilot's cost over the bare library is visible.

Run as a script (``python bench/minimal_scp.py --help``); it imports nothing from radpilot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt

VERIFICATION = "1.2.840.10008.1.1"


def _handler(out: Path) -> Any:
    def handle_store(event: Any) -> int:
        uid = event.request.AffectedSOPInstanceUID
        (out / f"{uid}.dcm").write_bytes(event.encoded_dataset())
        return 0x0000

    return handle_store


def main(argv: list[str] | None = None) -> int:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ae-title", default="PYNETDICOM")
    parser.add_argument("--out", type=Path, required=True, help="existing folder for files")
    parser.add_argument(
        "--max-pdu", type=int, default=None, help="max receive PDU [default: pynetdicom's, 16382]"
    )
    args = parser.parse_args(argv)
    ae = AE(ae_title=args.ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(VERIFICATION)
    if args.max_pdu is not None:
        ae.maximum_pdu_size = args.max_pdu
    ae.maximum_associations = 16
    ae.start_server(
        ("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, _handler(args.out))]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
