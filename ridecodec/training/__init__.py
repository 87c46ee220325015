"""Training loops and data for the built-in models (needs the training images, not the codec)."""
