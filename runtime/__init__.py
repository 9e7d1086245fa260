"""What both services need at run time: TLS loading, logging, sd_notify, config files, gRPC transport
options, the service lifecycle, heap trimming and the trace format.

Imports neither agent/ nor collector/, so both can depend on it. The `gpulse` commands live apart, in
gpulse/, which may import everything.
"""

__version__ = "0.1.0"
