"""Protocol adapters: client protocols in, provider protocols out, through the Envelope."""

__all__: list[str] = []
