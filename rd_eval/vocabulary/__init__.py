"""The words every part of rd-eval shares, each defined once: token scopes, the task-name grammar, model_args."""
