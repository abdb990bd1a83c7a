"""The web book in a real browser (make book-check)."""
