"""lmms-eval's side: running it and checking what it wrote, and reading its results and samples files."""
