"""Bearer-token auth: a grpc.aio server interceptor (embedded) and the same check for Ray.

    tokens = read_tokens("/run/secrets/clipspot-tokens")      # one token per line
    server = grpc.aio.server(interceptors=[TokenAuth(tokens)])          # embedded
    refusal = TokenAuth(tokens).refusal(grpc_context.invocation_metadata())   # Ray ingress

A TextSpotting call must carry `authorization: Bearer <token>` metadata: without it the call
ends UNAUTHENTICATED, with a token that is not in the file PERMISSION_DENIED. Health checks and
reflection stay open, because kubelet probes and grpcurl's discovery carry no credentials and
reveal nothing a port scan would not. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc

from pipeline.errors import ClipSpotError

# Services anyone may call: probes and discovery (grpc.health.v1, reflection v1 and v1alpha).
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
SCHEME = "bearer "


def read_tokens(path: str | Path) -> tuple[bytes, ...]:
    """The non-blank lines of a token file; one-line errors for a missing or empty file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise ClipSpotError(f"{path}: cannot read the token file ({reason})") from None
    tokens = tuple(line.strip().encode() for line in text.splitlines() if line.strip())
    if not tokens:
        raise ClipSpotError(f"{path}: the token file has no tokens (one per line)")
    return tokens


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata a client sends with each call (none without a token)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class TokenAuth(grpc.aio.ServerInterceptor):
    """Refuses calls to the protected services that lack a known bearer token."""

    def __init__(self, tokens: Sequence[bytes]) -> None:
        self._tokens = tuple(tokens)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        refusal = self.refusal(details.invocation_metadata or ())
        return handler if refusal is None else _refusing(handler, *refusal)

    def refusal(self, metadata: Sequence) -> tuple[grpc.StatusCode, str] | None:
        """(status, message) ending a call with this metadata; None: the token is accepted."""
        header = next((value for key, value in metadata if key == "authorization"), None)
        if not isinstance(header, str) or not header.lower().startswith(SCHEME):
            return grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>'"
        if not self.accepts(header[len(SCHEME):].strip().encode()):
            return grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not accepted"
        return None

    def accepts(self, token: bytes) -> bool:
        # Every token is compared, so the time taken does not tell which one nearly matched.
        matches = [hmac.compare_digest(token, known) for known in self._tokens]
        return any(matches)


def _refusing(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that ends the call with `code`."""

    async def abort(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    serializers = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **serializers)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **serializers)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **serializers)
    return grpc.unary_unary_rpc_method_handler(abort, **serializers)
