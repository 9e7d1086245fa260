"""The audit log: one hash-chained JSON line per admin action (see docs/security.md, "Audit log")."""

from collector.audit.log import AuditLog, AuditRecord, verify

__all__ = ["AuditLog", "AuditRecord", "verify"]
