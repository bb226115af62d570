"""What a running service reports about itself."""
