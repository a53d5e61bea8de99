"""The HTTP endpoints and their TLS/basic-auth configuration."""
