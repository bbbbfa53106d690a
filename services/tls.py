"""TLS and mutual TLS credentials for the gRPC server and its clients, from PEM files.

    ServerTls(cert="server.pem", key="server.key", client_ca="clients-ca.pem").credentials()
    ClientTls(ca="ca.pem", cert="client.pem", key="client.key").credentials()

The files are checked with Python's `ssl` module before gRPC sees them: gRPC accepts a key that
does not match its certificate and only fails each handshake later, with no word of why.
A server given `client_ca` requires every client to present a certificate that CA signed.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from pipeline.errors import ClipSpotError


@dataclass(frozen=True)
class ServerTls:
    cert: str | Path  # PEM certificate chain, the server's own first
    key: str | Path  # its PEM private key
    client_ca: str | Path | None = None  # set: clients must present a certificate it signed

    def credentials(self) -> grpc.ServerCredentials:
        _check_pair(self.cert, self.key, ssl.PROTOCOL_TLS_SERVER)
        client_ca = _read_ca(self.client_ca) if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(_read(self.key, "private key"), _read(self.cert, "certificate"))],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


@dataclass(frozen=True)
class ClientTls:
    ca: str | Path | None = None  # the CA that signed the server's certificate; None: system CAs
    cert: str | Path | None = None  # the client's certificate, for a server that requires one
    key: str | Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ClipSpotError("a client certificate needs both --tls-cert and --tls-key")
        if self.cert is not None and self.key is not None:
            _check_pair(self.cert, self.key, ssl.PROTOCOL_TLS_CLIENT)
        return grpc.ssl_channel_credentials(
            root_certificates=_read_ca(self.ca) if self.ca else None,
            private_key=_read(self.key, "private key") if self.key else None,
            certificate_chain=_read(self.cert, "certificate") if self.cert else None,
        )


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ClipSpotError(f"{path}: cannot read the TLS {what} ({err.strerror})") from None


def _read_ca(path: str | Path) -> bytes:
    data = _read(path, "CA certificate")
    try:
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as err:
        raise ClipSpotError(f"{path}: not a PEM CA certificate ({_reason(err)})") from None
    return data


def _check_pair(cert: str | Path, key: str | Path, protocol: int) -> None:
    """The certificate and key are readable PEM and belong together."""
    _read(cert, "certificate")
    _read(key, "private key")
    try:
        # A password callback, or OpenSSL would prompt on the terminal for an encrypted key.
        ssl.SSLContext(protocol).load_cert_chain(str(cert), str(key), password=_no_password)
    except ssl.SSLError as err:
        raise ClipSpotError(f"{cert} / {key}: not a matching PEM certificate and private key "
                            f"({_reason(err)})") from None


def _no_password() -> str:
    raise ClipSpotError("encrypted private keys are not supported (gRPC cannot decrypt them)")


def _reason(err: Exception) -> str:
    return getattr(err, "reason", None) or str(err).splitlines()[0]
