"""rd-eval: measure "Seeing but Not Thinking" in MoE vision-language models and test the routing fix."""

__version__ = "0.1.0"
