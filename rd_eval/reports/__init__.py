"""`report`, `leaderboard` and `check`: siblings on one run catalogue, the analysis and rendering."""
