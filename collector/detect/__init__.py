"""Fault and anomaly detection over the fleet store: rules, peer comparison and baselines."""

from collector.detect.engine import DetectionEngine
from collector.detect.rules import DEFAULT_RULES, Rule, RuleError, RuleSet, load_rules
from collector.detect.sinks import RecordingSink

__all__ = [
    "DEFAULT_RULES",
    "DetectionEngine",
    "LoggingSink",
    "RecordingSink",
    "Rule",
    "RuleError",
    "RuleSet",
    "load_rules",
]
