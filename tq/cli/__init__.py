"""The `tq` command line: thin click commands over the library."""
