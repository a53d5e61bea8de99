"""A finished run into samples: the counter, capped labels, prices, a trace's input."""
