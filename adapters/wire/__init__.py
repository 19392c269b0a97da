"""Wire codecs shared by an ingress and an egress of the same protocol."""

__all__: list[str] = []
