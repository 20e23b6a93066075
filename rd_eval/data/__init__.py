"""Where benchmark data comes from: local mirrors, the hub at pinned revisions, and the provenance reports show."""
