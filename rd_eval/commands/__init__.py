"""The `rd-eval` command line: argument parsing and thin commands over the library."""
