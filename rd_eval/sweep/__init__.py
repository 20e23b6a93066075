"""`rd-eval sweep`: the paper's protocol from one YAML file — its config (validated once), the grid of routing
settings it expands to, the sweep folder's layout and the resume state that lets a killed sweep rerun only what
it lacks."""
