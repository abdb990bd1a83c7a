"""Plot helpers by topic; each takes ``ax=None``, draws, and returns the Axes."""
