"""The gpulse wire contract: generated protobuf modules, the field catalog and the frame codec."""
