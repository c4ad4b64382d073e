"""The node supervisor: node grammar, processes, the daemon and its systemd integration."""
