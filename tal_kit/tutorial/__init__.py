"""Notebook support, named after the lessons: what only the tutorial notebooks call (the figures and worked examples
of notebooks 01-04, and the set-up every notebook starts with). Nothing in the pipeline imports it; it may import
anything below it, viz included."""
