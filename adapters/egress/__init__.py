"""Provider adapters: each implements `core.provider.Provider`. Loaded by registry string."""

__all__: list[str] = []
