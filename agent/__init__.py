"""The gpulse host agent: samples GPUs and the host, spools what it sampled, streams it to a collector."""
