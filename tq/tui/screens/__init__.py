"""Screens pushed over the console's main view."""
