"""One module per chapter of the book: the chapter-specific experiments its notebook calls."""
