"""Scripts that make the figures and reports of the project."""
