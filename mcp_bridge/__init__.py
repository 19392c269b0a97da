"""The MCP bridge: one governed `/mcp` endpoint federating the configured MCP servers."""

from mcp_bridge.bridge import McpBridge

__all__ = ["McpBridge"]
