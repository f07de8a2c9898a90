"""Audit: the on-disk spool and the uploader that drains it to the control plane."""
