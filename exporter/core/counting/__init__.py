"""A finished run into samples: the counter, prices, tool names."""
