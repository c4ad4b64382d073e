"""The worker: a parent process that consumes and dispatches to a pool that executes."""
