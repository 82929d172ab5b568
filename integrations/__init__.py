"""Farm backends (local, and later OpenJD, Deadline, OpenCue, Flamenco, Tractor) and DCC plugins."""
