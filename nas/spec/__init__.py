"""The experiment spec: TOML parsed into frozen dataclasses, documented and resolved."""
