"""The gpulse collector: receives agent streams, keeps the fleet's state, detects, alerts, exports."""
