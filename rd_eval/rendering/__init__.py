"""Output formats: markdown tables, CSV/JSON, plots and HTML, from analysis data."""
