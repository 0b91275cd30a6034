"""leaf package."""
