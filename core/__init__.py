"""The gateway's types and orchestration. Import submodules directly (`core.envelope` …)."""

__all__ = [
    "access",
    "app",
    "cli",
    "config",
    "envelope",
    "errors",
    "filtering",
    "metering",
    "metrics",
    "pipeline",
    "provider",
    "quota",
    "routing",
    "state",
    "tracing",
]
