#encoding: utf-8
"""Namespace package of pythond's zenpython compatibility layer (docs/MIGRATING.md):
other packages of this name on sys.path (a ZenPack's own modules) still import."""
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
