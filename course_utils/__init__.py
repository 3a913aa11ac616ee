"""Learning at Scale: the library the course notebooks run on."""

__version__ = "0.1.0"
