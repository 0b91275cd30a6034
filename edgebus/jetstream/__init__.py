"""jetstream package."""
