# An empty file is valid: every attribute keeps its default.
