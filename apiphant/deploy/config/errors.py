"""The one exception of the deploy configuration: every module of it raises it, so it sits
apart from them all."""


class ConfigError(Exception):
    """A deploy.toml that cannot be used; the message is one line for the user."""
