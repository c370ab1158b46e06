"""Videos: the tracking session, its state and memory bank, concept tracking, lazy frames."""
