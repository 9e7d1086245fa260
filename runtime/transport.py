"""gRPC settings both ends must agree on: keepalive, message size, TLS name override."""

from __future__ import annotations

# The client pings every 20 s when idle; the server accepts pings down to every 10 s, so it never
# answers GOAWAY too_many_pings (the failure mode of mismatched keepalive settings).
CLIENT_KEEPALIVE_MS = 20_000
CLIENT_KEEPALIVE_TIMEOUT_MS = 10_000
SERVER_MIN_PING_INTERVAL_MS = 10_000
# A client pinging faster than the server permits is refused after this many strikes (gRPC's own
# default): the protection against abusive clients stays on, our own clients never come near it.
SERVER_MAX_PING_STRIKES = 2
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def channel_options(
    server_name: str = "",
    *,
    keepalive_ms: int = CLIENT_KEEPALIVE_MS,
    keepalive_timeout_ms: int = CLIENT_KEEPALIVE_TIMEOUT_MS,
) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", keepalive_timeout_ms),
        # Recent gRPC cores time out an unanswered ping by this, not keepalive_timeout_ms (default 60 s):
        # without it a black-holed link is noticed only after minutes.
        ("grpc.http2.ping_timeout_ms", keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Reconnection is ours (jittered, with failover); keep gRPC's own retries out of the way.
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def server_options(
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    *,
    min_ping_interval_ms: int = SERVER_MIN_PING_INTERVAL_MS,
    max_ping_strikes: int = SERVER_MAX_PING_STRIKES,
) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # The key gRPC core reads (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS); without it the
        # server expects 5 minutes between pings and answers a 20 s keepalive with too_many_pings.
        ("grpc.http2.min_ping_interval_without_data_ms", min_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", max_ping_strikes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # gRPC sets SO_REUSEPORT by default: a second collector on the same port would start without
        # error and take half of the agents. Bound exclusively, it fails and says so.
        ("grpc.so_reuseport", 0),
        # A connection that has not finished its TLS handshake in this time is closed (default 120 s).
        ("grpc.server_handshake_timeout_ms", 10_000),
    ]
