"""One module per chapter of the book: the chapter-specific experiments its notebook calls.

Every notebook imports its chapter's module, so importing this package is where its tables are set to be shown for
people (``analysis_lib.book.tables``)."""

from analysis_lib.book.tables import show_tables_for_people

show_tables_for_people()
