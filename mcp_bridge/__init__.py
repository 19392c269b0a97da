"""The MCP endpoint and upstream MCP clients (not yet built)."""

__all__: list[str] = []
