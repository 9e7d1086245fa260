"""The `gpulse` command and its subcommands; the one package that may import agent, collector and runtime."""
