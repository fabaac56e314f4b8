#encoding: utf-8
"""``ObjectMap`` and ``RelationshipMap`` as zenpython plugins build them.

A plugin puts them in its result's ``maps`` list; pythond turns each object map into
an object point (docs/MIGRATING.md, "From Zenoss zenpython"): there is no Zenoss
model to apply them to.
"""


class ObjectMap(object):
    """Attributes for one modelled object: ``ObjectMap({"id": ..., "attr": v}, compname=,
    modname=, relname=)``; attributes are plain attributes of the map too."""

    compname = ""
    modname = ""
    classname = ""
    relname = ""
    plugin_name = ""

    def __init__(self, data=None, compname="", modname="", relname="", classname="", **kwargs):
        self._attrs = []
        self.compname = compname
        self.modname = modname
        self.relname = relname
        self.classname = classname
        self.updateFromDict(dict(data or {}, **kwargs))

    def updateFromDict(self, data):
        for key, value in data.items():
            setattr(self, key, value)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if not name.startswith("_") and name not in ("compname", "modname", "relname", "classname",
                                                     "plugin_name") and name not in self._attrs:
            self._attrs.append(name)

    def __getitem__(self, name):
        return getattr(self, name)

    def __setitem__(self, name, value):
        setattr(self, name, value)

    def __contains__(self, name):
        return name in self._attrs

    def items(self):
        return [(name, getattr(self, name)) for name in self._attrs]

    def keys(self):
        return list(self._attrs)

    def __repr__(self):
        return "<ObjectMap %s>" % dict(self.items())


class RelationshipMap(list):
    """A list of ``ObjectMap``s that together make up the relationship ``relname``."""

    def __init__(self, relname="", compname="", modname="", objmaps=(), parentId="", plugin_name=""):
        list.__init__(self)
        self.relname = relname
        self.compname = compname
        self.modname = modname
        self.parentId = parentId
        self.plugin_name = plugin_name
        for objmap in objmaps:
            self.append(objmap if isinstance(objmap, ObjectMap) else ObjectMap(objmap, modname=modname))

    @property
    def maps(self):
        return list(self)

    def extend(self, objmaps):
        for objmap in objmaps:
            self.append(objmap)

    def __repr__(self):
        return "<RelationshipMap %s %d maps>" % (self.relname, len(self))


class MultiArgs(object):
    """Arguments for a map attribute set through a method that takes several."""

    def __init__(self, *args):
        self.args = args

    def __repr__(self):
        return repr(self.args)
