"""Built-in providers. Heavy dependencies are imported by each provider module itself."""

__all__: list[str] = []
