"""Remediation: a suggested action on every alert, Slurm drain and resume, a generic command, and the
safety around them (modes, breaker, cooldown, opt-out, approvals, a durable action log)."""
