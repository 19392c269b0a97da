"""Client protocols: each module decodes its wire into an Envelope and encodes replies."""

__all__: list[str] = []
