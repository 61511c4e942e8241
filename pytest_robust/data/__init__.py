"""Data sets: the embedded synthetic dermoscopy generator and image-folder loaders."""
