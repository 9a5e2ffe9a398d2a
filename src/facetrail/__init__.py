"""facetrail: accountable face search that returns investigative leads, never identifications."""

__version__ = "0.1.0"
