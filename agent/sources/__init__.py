"""Where the agent's data comes from: one GPU interface with nvml, sim and replay backends, and the host."""
