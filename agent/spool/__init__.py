"""Where sampled records wait until the collector acknowledges them.

A spool is a log of AgentMessages per *epoch* (one agent boot, described by its Hello). The
sampler appends; the shipper reads what is unacknowledged and deletes only what was acknowledged.
"""

from agent.spool.base import Spool, SpoolDrop
from agent.spool.memory import MemorySpool

__all__ = ["MemorySpool", "Spool", "SpoolDrop"]
