"""Writing outputs safely (atomic files and folders)."""
