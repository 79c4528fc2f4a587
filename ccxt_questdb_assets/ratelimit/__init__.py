"""ratelimit layer."""
