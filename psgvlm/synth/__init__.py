"""Synthetic polysomnography: physiology, and the on-disk layouts of each dataset."""
