"""clinic: appointment software for a small clinic, in one Python process."""
