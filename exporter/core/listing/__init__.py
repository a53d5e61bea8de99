"""The pure half of listing runs: the resumable walk, the cursor direction judged per page,
and where listing stands (positions); the pager in `exporter.poll` drives them."""
