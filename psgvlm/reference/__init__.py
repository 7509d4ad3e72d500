"""Frozen pretrained reference stagers (YASA) run on one recording."""
