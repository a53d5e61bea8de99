"""Pending tool-call approvals per thread, and what each observed run tells them."""
