"""Model packages (manifest + weights), the registry, runtimes and explainability."""
