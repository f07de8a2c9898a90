"""Masking of sensitive values in query results, on the wire.

`detectors` finds sensitive content (emails, card numbers, keys...) in free text with one compiled
regex per scanner and cheap validators; `masks` turns values into masked values that keep a useful
shape, for text cells, JSON documents, error fields and binary-format cells. Pure code, no I/O.
"""
