"""Signal operations on recordings: resampling, the one epoch cutter, scaling, corruption."""
