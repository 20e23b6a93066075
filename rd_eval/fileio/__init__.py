"""Files users exchange: atomic JSON/text writes, content hashes, and checked output paths."""
