"""Run-time pieces shared by the gpulse agent and collector: the command, logging, TLS, config files."""

__version__ = "0.1.0"
