"""gRPC settings both ends must agree on: keepalive, message size, TLS name override."""

from __future__ import annotations

# The client pings every 20 s when idle; the server accepts pings down to every 10 s, so it never
# answers GOAWAY too_many_pings (the failure mode of mismatched keepalive settings).
CLIENT_KEEPALIVE_MS = 20_000
SERVER_MIN_PING_INTERVAL_MS = 10_000
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def channel_options(server_name: str = "") -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [
        ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
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


def server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
