"""The alert lifecycle: grouping, inhibition, silences, routing, receivers and durable state."""
