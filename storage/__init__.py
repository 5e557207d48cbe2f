"""The output tree: where every file of ``out/<profile>/`` lives (``Layout``) and the one way files are
written into it (``atomic``: write a temporary sibling, rename it into place).

Standard library only, so that every room — the pipeline framework, the stages, the trainer on a GPU box
— can ask for a path or write a file without importing anything else.
"""
