#encoding: utf-8
"""``PythonDataSourcePlugin``: the base class of zenpython data source plugins.

A ZenPack's ``dsplugins.py`` does
``from ZenPacks.zenoss.PythonCollector.datasources.PythonDataSource import
PythonDataSourcePlugin`` and subclasses it. The defaults here are zenpython's
documented ones; the runner's adapter (``pythond_kinds.py``) drives the lifecycle
(``collect`` -> ``onResult`` -> ``onSuccess``/``onError`` -> ``onComplete``,
``cleanup`` on stop and reload) and turns results into points (docs/MIGRATING.md).

The zenhub-side parts (``PythonDataSource``, the ZODB datasource class, its
``getService``) do not exist under pythond: ``config_key`` and ``params`` are kept so
plugins import, but pythond builds each ``config`` from the input's configuration.
"""

from collections import defaultdict


class PythonDataSourcePlugin(object):
    """Abstract base class of a zenpython data source plugin."""

    proxy_attributes = ()

    # zenpython runs a blocking plugin in a thread; pythond runs every collect() in
    # its own run thread, so the flag changes nothing here.
    is_blocking = False

    @classmethod
    def config_key(cls, datasource, context):
        return (getattr(context, "id", None), getattr(datasource, "cycletime", None),
                getattr(datasource, "template", None), getattr(datasource, "datasource", None),
                cls.__module__ + "." + cls.__name__)

    @classmethod
    def params(cls, datasource, context):
        return {}

    def __init__(self, config=None):
        pass

    def new_data(self):
        """An empty result: ``{"values": defaultdict(dict), "events": [], "maps": []}``."""
        return {"values": defaultdict(dict), "events": [], "maps": []}

    def getService(self, service_name):
        raise NotImplementedError("zenhub services (%s) do not exist under pythond" % service_name)

    def collect(self, config):
        return NotImplementedError

    def onResult(self, result, config):
        return result

    def onSuccess(self, result, config):
        return result

    def onError(self, result, config):
        return result

    def onComplete(self, result, config):
        return result

    def cleanup(self, config):
        return


class PythonDataSource(object):
    """Stand-in for the zenhub datasource class, which some plugin modules import for
    type checks; pythond never instantiates it."""

    sourcetype = "Python"
    plugin_classname = None
    cycletime = "${here/zPythonClass}"
