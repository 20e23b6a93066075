"""Routing: finding MoE router sites per family, recording routing per document, steering router logits (the
intervention specs), and the routing records on disk."""
