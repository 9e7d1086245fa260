"""The gRPC stream from the agents to the store: decode, sequence and acks, durable progress, clock skew and
rate limits."""
