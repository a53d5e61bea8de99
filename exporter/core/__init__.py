"""The pure core: run records, the counting rules, walk and cursor state. No I/O, no OTel."""
