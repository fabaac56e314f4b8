#encoding: utf-8
"""Part of pythond's zenpython compatibility layer; see docs/MIGRATING.md."""
