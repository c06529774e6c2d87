"""Reading images and videos, and writing results."""
