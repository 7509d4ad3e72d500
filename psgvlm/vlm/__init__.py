"""Vision-language (and image) models: loading, prompts and data, scoring, prediction, checks."""
