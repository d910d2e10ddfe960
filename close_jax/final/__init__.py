"""Training architectures from scratch: standalone networks of chosen cells."""
