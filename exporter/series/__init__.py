"""The metric catalogue and the persisted values of its series, below the core that counts."""
