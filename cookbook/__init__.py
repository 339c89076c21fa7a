"""Helper package for the query-document pairs cookbook."""
__version__ = "0.1.0"
