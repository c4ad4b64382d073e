"""Widgets of the console's main view."""
