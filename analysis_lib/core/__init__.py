"""Infrastructure every other layer uses: the content-keyed artefact cache, progress, result files, image files and
leftovers of dead processes. Imports nothing else of the library."""
