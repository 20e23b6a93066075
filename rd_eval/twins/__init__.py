"""Text twins and perception: the deterministic renderer, exact twins, rd_demo problems, transcripts and the
perception check."""
