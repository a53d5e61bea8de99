"""The pure core: run records, the counting rules, walk and cursor state. No I/O, no OTel.
Entered through `tracker` (the front door); its sub-packages are layers of their own."""
