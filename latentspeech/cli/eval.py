"""CLI: placeholder until its package lands (see CONTRIBUTING.md)."""


def register(sub) -> None:
    pass
