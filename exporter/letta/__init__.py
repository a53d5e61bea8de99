"""The Letta runs API: typed models and an HTTP client."""
