"""A local PCCS (Intel PCS API v4) on 127.0.0.1, serving given collateral the way Intel does.

    >>> with FakePccs(collateral_mapping) as pccs:
    ...     source = PccsCollateralSource(pccs.url, cache_dir)
    ...     pccs.requests          # paths asked for, in order
    ...     pccs.override["/tdx/certification/v4/tcb"] = (500, {}, b"boom")

Responses: TCB info and QE identity as ``{"tcbInfo"|"enclaveIdentity": …,
"signature": hex}`` with the exact signed text inside; the PCK CRL as DER; the
root CA CRL as hex (as a PCCS serves it); issuer chains URL-encoded in
``TCB-Info-Issuer-Chain``, ``SGX-Enclave-Identity-Issuer-Chain`` and
``SGX-PCK-CRL-Issuer-Chain``. Anything else is 404.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Reply = tuple[int, dict[str, str], bytes]

TCB_PATH = "/tdx/certification/v4/tcb"
QE_IDENTITY_PATH = "/tdx/certification/v4/qe/identity"
PCK_CRL_PATH = "/sgx/certification/v4/pckcrl"
ROOT_CA_CRL_PATH = "/sgx/certification/v4/rootcacrl"


def replies_for(collateral: Mapping[str, str], fmspc: str) -> dict[str, Reply]:
    """What a PCCS answers for each path, from ``QuoteCollateralV3`` JSON fields."""

    def chain(name: str) -> str:
        return urllib.parse.quote(collateral[name], safe="")

    def signed(member: str, text: str, signature: str) -> bytes:
        return f'{{"{member}":{text},"signature":"{signature}"}}'.encode()

    json_type = {"Content-Type": "application/json"}
    return {
        f"{TCB_PATH}?fmspc={fmspc}": (
            200,
            {**json_type, "TCB-Info-Issuer-Chain": chain("tcb_info_issuer_chain")},
            signed("tcbInfo", collateral["tcb_info"], collateral["tcb_info_signature"]),
        ),
        QE_IDENTITY_PATH: (
            200,
            {
                **json_type,
                "SGX-Enclave-Identity-Issuer-Chain": chain("qe_identity_issuer_chain"),
            },
            signed(
                "enclaveIdentity", collateral["qe_identity"], collateral["qe_identity_signature"]
            ),
        ),
        f"{PCK_CRL_PATH}?ca=platform&encoding=der": (
            200,
            {
                "Content-Type": "application/pkix-crl",
                "SGX-PCK-CRL-Issuer-Chain": chain("pck_crl_issuer_chain"),
            },
            bytes.fromhex(collateral["pck_crl"]),
        ),
        ROOT_CA_CRL_PATH: (200, {"Content-Type": "text/plain"}, collateral["root_ca_crl"].encode()),
    }


class FakePccs:
    """A threaded HTTP server; ``replies`` by path+query, ``override`` by path (any query)."""

    def __init__(self, collateral: Mapping[str, str], fmspc: str) -> None:
        self.replies: dict[str, Reply] = replies_for(collateral, fmspc)
        self.override: dict[str, Reply] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append(self.path)
                status, headers, body = fake.reply(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, path: str) -> Reply:
        bare = urllib.parse.urlsplit(path).path
        if bare in self.override:
            return self.override[bare]
        if path in self.replies:
            return self.replies[path]
        if bare == QE_IDENTITY_PATH:  # with or without ?update=standard
            return self.replies[QE_IDENTITY_PATH]
        return 404, {}, b"not found"

    def count(self, path: str) -> int:
        """How many requests went to ``path`` (query ignored)."""
        return sum(1 for p in self.requests if urllib.parse.urlsplit(p).path == path)

    def __enter__(self) -> FakePccs:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
