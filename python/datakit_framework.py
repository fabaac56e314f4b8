#encoding: utf-8
"""pythond's drop-in replacement for DataKit's ``datakit_framework.py``.

Collectors written for DataKit's ``pythond`` input do
``from datakit_framework import DataKitFramework``, subclass it and call
``self.report({...})`` or one of the ``feed_*`` helpers. This module keeps that public
API -- names, signatures, ``ValueError`` messages, the shape of every point, the
name-mangled attributes old scripts poke at -- so such scripts run unchanged.

What it owns:

* building DataKit points from the ``feed_*`` helpers exactly as DataKit does;
* turning one ``report()`` into JSON *point by point*, so that one value JSON cannot
  carry (NaN, bytes, a datetime, a nested dict...) rejects only its own point, never its
  neighbours (``_encode_report``);
* packing those points into ``report`` frames of the agent/worker protocol
  (docs/PROTOCOL.md), split to respect the frame limit (``_report_frames``);
* DataKit's own HTTP transport (POST a JSON array to ``/v1/write/<category>``), used
  when no pythond worker runner is present or when the runner selects it.

The worker runner (``pythond_worker.py``) installs a pipe transport in ``_transport``;
``report()`` then hands its data to it. Without a runner this module behaves like
DataKit's: a script imported on its own posts to ``http://127.0.0.1:9529``.

Standard library only; runs on Python 3.8+.
"""

import json
import numbers
import sys
import urllib.error
import urllib.parse
import urllib.request
from string import Template
import logging

logger = logging.getLogger('pythond_framework')

# Set by the worker runner to an object with ``report(instance, data)`` and
# ``lasterror(instance, input_name, err_msg)``; both return what ``report()`` returns.
# None means "no runner": talk HTTP to DataKit (or to pythond's HTTP API) like DataKit.
_transport = None

# Scheme of the HTTP transport. The runner sets it (with the host/port class defaults
# below) from ``--http-url``; DataKit itself only ever speaks plain http.
_http_scheme = "http"

# Bearer token sent with every HTTP request, set by the runner when the agent's API
# requires one. DataKit's framework has no such thing (its API is loopback-only).
_http_token = None

# Name of the agent input this worker runs, set by the runner for the HTTP transport:
# report() then tells the agent which input and plugin the points come from
# (X-Pythond-Input / X-Pythond-Plugin headers), so it adds the input's tags and counts
# them per plugin as it does for the pipe.
_http_input = None

# Seconds before an HTTP post gives up. DataKit had none, so one dead endpoint could
# hang a collector forever.
HTTP_TIMEOUT = 10.0

# Category code -> DataKit write API path, in the order DataKit posts them.
_CATEGORIES = (
    ("M", "metric"),
    ("L", "logging"),
    ("R", "rum"),
    ("O", "object"),
    ("CO", "custom_object"),
    ("E", "keyevent"),
)

# Pipe frames are machine-read: compact separators. HTTP bodies use json.dumps'
# defaults so they are byte-for-byte what DataKit's framework sends. Both escape
# non-ASCII (ensure_ascii), which makes every encoded string pure ASCII: its length
# is its size in bytes, and no lone surrogate can reach the wire as raw bytes.
def _make_dumps(item_separator, key_separator):
    encoder = json.JSONEncoder(allow_nan=False, separators=(item_separator, key_separator))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    # JSONEncoder.encode builds a new C encoder on every call, which is a good part of
    # the cost of a small point. Build it once. Without the circular-reference markers
    # (None) a self-referencing point ends in RecursionError, which callers catch.
    iterencode = make(None, encoder.default, json.encoder.encode_basestring_ascii, None,
                      key_separator, item_separator, False, False, False)
    join = "".join

    def dumps(value):
        return join(iterencode(value, 0))

    return dumps


_dumps_compact = _make_dumps(",", ":")
_dumps_http = _make_dumps(", ", ": ")

_STR, _INT, _FLOAT, _BOOL = str, int, float, bool


class DataKitFramework(object):
    '''
    Base class of every collector. Subclass it, set ``name`` and ``interval`` (seconds)
    and implement ``run()``, calling ``self.report({...})`` or ``self.feed_*()``.
    '''
    name = 'DataKitFramework'
    # Older DataKit releases spelled these with leading double underscores; scripts
    # written against them may read the mangled names, so both spellings exist.
    __name = 'DataKitFramework'
    __dk_host = "127.0.0.1"
    __dk_port = 9529
    __magic = "{xxx}"
    log_name = ""
    is_init_log = False

    # Set by the worker runner on the instances it creates: the plugin id as a JSON
    # string, ready to splice into frames. Instances a script creates itself keep null.
    _pythond_id_json = "null"
    # Set by the runner on the objects of an input's instances: the instance's tags,
    # added to every point (docs/CONFIG.md, "Instances").
    _pythond_tags = None

    def __init__(self, **kwargs):
        ip = kwargs.get("ip")
        if ip:
            self.__dk_host = ip
        port = kwargs.get("port")
        if port:
            self.__dk_port = port

    def run(self):
        raise NotImplementedError()

    def test(self):
        print("log_name = ", self.log_name)
        mylog("789")

    # ------------------------------------------------------------------ report

    def report(self, data):
        """Send ``data`` ({'M': [...], 'L': [...], ..., 'input': ...}).

        Returns a string, as DataKit's framework does: the body of DataKit's answer to
        the last post over HTTP, "" through the pythond pipe (the agent validates the
        points asynchronously and logs what it rejects).
        """
        tags = self._pythond_tags
        if tags and isinstance(data, dict):
            data = _with_instance_tags(data, tags)
        transport = _transport
        if transport is not None:
            return transport.report(self, data)
        return self._report_over_http(data)

    def checkArgEmpty(self, name, checkStr):
        if not checkStr:
            raise ValueError('arguments missing \"' + name + '\"')

    # ------------------------------------------------------------------ feed_* helpers
    #
    # Point shapes follow DataKit's integration test payloads: kwargs are merged into
    # fields (after the named ones), objects get the tag ``name``, events use the
    # measurement "measurement" and carry ``df_source``. Unlike DataKit, the caller's
    # ``tags``/``fields`` dicts are copied, not modified in place, and ``tags=None``
    # means no tags instead of a TypeError from ``len(None)``.

    def feed_metric(self, input=None, measurement=None, tags=None, fields=None, time=None, **kwargs):
        self.checkArgEmpty("measurement", measurement)
        fields = _merged(fields, kwargs)
        self.checkArgEmpty("fields", fields)
        data = {
            "measurement": measurement,
            "tags": _copied(tags),
            "fields": fields,
            "time": time,
        }
        return self.report({'M': [data], 'input': input})

    def feed_logging(self, input=None, source=None, tags=None, message=None, time=None, **kwargs):
        self.checkArgEmpty("source", source)
        self.checkArgEmpty("message", message)
        fields = {"message": message}
        fields.update(kwargs)
        data = {
            "measurement": source,
            "tags": _copied(tags),
            "fields": fields,
            "time": time,
        }
        return self.report({'L': [data], 'input': input})

    def feed_object(self, input=None, cls=None, name=None, tags=None, fields=None, time=None, **kwargs):
        self.checkArgEmpty("cls", cls)
        self.checkArgEmpty("name", name)
        tags = _copied(tags)
        tags["name"] = name
        data = {
            "measurement": cls,
            "tags": tags,
            "fields": _merged(fields, kwargs),
            "time": time,
        }
        return self.report({'O': [data], 'input': input})

    def feed_user_event(self, df_user_id=None, tags=None, df_date_range=10, df_status=None, df_event_id=None, df_title=None, df_message=None, **kwargs):
        self.checkArgEmpty("df_user_id", df_user_id)
        self.checkArgEmpty("df_date_range", df_date_range)
        self.checkArgEmpty("df_status", df_status)
        self.checkArgEmpty("df_event_id", df_event_id)
        self.checkArgEmpty("df_title", df_title)
        fields = {
            "df_date_range": df_date_range,
            "df_source": "user",
            "df_user_id": df_user_id,
            "df_status": df_status,
            "df_event_id": df_event_id,
            "df_title": df_title,
            "df_message": df_message or "",
        }
        return self._feed_event(tags, fields, kwargs)

    def feed_monitor_event(self, df_dimension_tags=None, tags=None, df_date_range=10, df_status=None, df_event_id=None, df_title=None, df_message=None, **kwargs):
        self.checkArgEmpty("df_dimension_tags", df_dimension_tags)
        self.checkArgEmpty("df_date_range", df_date_range)
        self.checkArgEmpty("df_status", df_status)
        self.checkArgEmpty("df_event_id", df_event_id)
        self.checkArgEmpty("df_title", df_title)
        fields = {
            "df_date_range": df_date_range,
            "df_source": "monitor",
            "df_dimension_tags": df_dimension_tags,
            "df_status": df_status,
            "df_event_id": df_event_id,
            "df_title": df_title,
            "df_message": df_message or "",
        }
        return self._feed_event(tags, fields, kwargs)

    def feed_system_event(self, tags=None, df_date_range=10, df_status=None, df_event_id=None, df_title=None, df_message=None, **kwargs):
        self.checkArgEmpty("df_date_range", df_date_range)
        self.checkArgEmpty("df_status", df_status)
        self.checkArgEmpty("df_event_id", df_event_id)
        self.checkArgEmpty("df_title", df_title)
        fields = {
            "df_date_range": df_date_range,
            "df_source": "system",
            "df_status": df_status,
            "df_event_id": df_event_id,
            "df_title": df_title,
            "df_message": df_message or "",
        }
        return self._feed_event(tags, fields, kwargs)

    def _feed_event(self, tags, fields, kwargs):
        fields.update(kwargs)
        # DataKit's events carry no "time" key at all (the server stamps them).
        data = {
            "measurement": "measurement",
            "tags": _copied(tags),
            "fields": fields,
        }
        return self.report({'E': [data]})

    # ------------------------------------------------------------------ lasterror

    def set_lasterror(self, input_name, err_msg):
        transport = _transport
        if transport is not None:
            return transport.lasterror(self, input_name, err_msg)
        base_url = self.construct_url("v1/lasterror")
        raw_data = {
            "input": input_name,
            "err_content": err_msg,
        }
        return self.http_post_json(base_url, raw_data)

    # ------------------------------------------------------------------ HTTP (DataKit's transport)

    def construct_url(self, path):
        s = Template('${s0}://${s1}:${s2}/${s3}')
        return s.safe_substitute(s0=_http_scheme, s1=_url_host(self.__dk_host), s2=self.__dk_port, s3=path)

    def _report_over_http(self, data):
        if not isinstance(data, dict):
            _warn("report() needs a dict like {'M': [...]}, got %s; nothing sent" % _type_name(data))
            return ""
        categories, rejected = _encode_report(data, _dumps_http)
        for rejection in rejected:
            _warn("point %s of '%s' not sent: %s" % (rejection["index"], rejection["category"], rejection["reason"]))
        # The agent counts the points not sent, as it does over the pipe: each
        # category's request names its own (a category whose points were all refused
        # is posted as an empty array just to say so).
        rejected_by_code = {}
        for rejection in rejected:
            rejected_by_code.setdefault(rejection["category"], []).append(rejection)
        if _http_input:
            sent = set(code for code, _points, _indices, _source in categories)
            for code in rejected_by_code:
                if code not in sent and code in dict(_CATEGORIES):
                    categories.append((code, [], None, ()))
        if not categories:
            return ""
        query = []
        # Same parameters, in the same order, as DataKit's framework (which did not
        # URL-encode them; we do, so an input name with a space still works).
        for key, value in (("precision", data.get("precision")), ("input", data.get("input")),
                           ("ignore_global_tags", data.get("ignore_global_tags")),
                           ("version", data.get("version"))):
            if value:
                if value is True:
                    value = "true"
                query.append(key + "=" + urllib.parse.quote(str(value), safe=""))
        suffix = ("?" + "&".join(query)) if query else ""
        paths = dict(_CATEGORIES)
        headers = {"Content-Type": "application/json"}
        if _http_input:
            # Percent-encoded: header values must be ASCII, names need not be.
            headers["X-Pythond-Input"] = urllib.parse.quote(str(_http_input), safe="")
            plugin = json.loads(self._pythond_id_json)
            if plugin:
                headers["X-Pythond-Plugin"] = urllib.parse.quote(str(plugin), safe="")
        response = ""
        for code, points, _indices, _source in categories:
            url = self.construct_url("v1/write/" + paths[code]) + suffix
            body = ("[" + ", ".join(points) + "]").encode("ascii")
            request_headers = headers
            if _http_input and rejected_by_code.get(code):
                request_headers = dict(headers, **{"X-Pythond-Rejected": _rejected_header(rejected_by_code[code])})
            response = _http_post(url, body, request_headers)
        return response

    def pretty_json(self, obj):
        if obj is None or obj == b'' or obj == "":
            return ""
        return json.dumps(json.loads(obj), indent=4, sort_keys=True)

    def construct_json(self, obj):
        json_data = json.dumps(obj)
        return bytes(json_data, 'utf8')

    def http_post_json(self, url, raw_data):
        return self.http_post_data_core(url, raw_data, 'POST', True)

    def http_post_raw(self, url, raw_data):
        return self.http_post_data_core(url, raw_data, 'POST', False)

    def http_post_data_core(self, url, raw_data, method, is_json):
        if method == 'GET':
            return _http_request(url, None, {}, 'GET')
        if is_json is True:
            try:
                body = json.dumps(raw_data, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as e:
                _warn("cannot post to %s: %s" % (url, e))
                return ""
            return _http_post(url, body, {"Content-Type": "application/json"})
        return _http_post(url, bytes(str(raw_data), 'utf8'), {})


# ---------------------------------------------------------------------- helpers

def _copied(tags):
    return dict(tags) if tags else {}


def _merged(fields, kwargs):
    merged = dict(fields) if fields else {}
    merged.update(kwargs)
    return merged


def _url_host(host):
    host = str(host)
    if ":" in host and not host.startswith("["):
        return "[" + host + "]"  # a bare IPv6 address
    return host


def _type_name(value):
    t = type(value)
    if t.__module__ in ("builtins", None):
        return t.__name__
    return t.__module__ + "." + t.__qualname__


def _warn(message):
    # Under the runner sys.stderr becomes a log frame tagged with the plugin.
    try:
        sys.stderr.write("datakit_framework: " + message + "\n")
    except Exception:
        pass


def _http_post(url, body, headers):
    return _http_request(url, body, headers, 'POST')


def _http_request(url, body, headers, method):
    """One request; returns the response body as text.

    Like DataKit's requests-based framework, an HTTP error status still returns the
    body (DataKit explains a 400 there) and a transport failure returns "" -- never an
    exception into the collector. Unlike it, the failure is written to stderr instead
    of a log file in the home directory.
    """
    if _http_token:
        headers = dict(headers, Authorization="Bearer " + _http_token)
    req = urllib.request.Request(url=url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as response:
            return response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        try:
            text = e.read().decode("utf-8", "replace")
        except Exception:
            text = ""
        _warn("%s %s: HTTP %s %s" % (method, url, e.code, text.strip()[:500]))
        return text
    except Exception as e:
        _warn("%s %s failed: %s" % (method, url, e))
        return ""


# ---------------------------------------------------------------------- point encoding

def _encode_report(data, dumps):
    """Encode every point of a report on its own.

    Returns ``(categories, rejected)``: ``categories`` is a list of
    ``(code, [point_json, ...], indices, points)`` in DataKit's category order, where
    ``indices`` is None when no point of that category was rejected (the i-th string
    is then the i-th point) or else the original index of each string, and ``points``
    is the script's sequence; ``rejected`` is a list of
    ``{"category", "index", "measurement", "reason"}`` dicts.
    """
    categories = []
    rejected = []
    for code, _path in _CATEGORIES:
        points = data.get(code)
        if not points:
            continue
        if isinstance(points, dict):
            # A lone point where a list was expected: DataKit would post a JSON object
            # and get a 400; taking it as a one-point list loses nothing.
            points = (points,)
        elif not isinstance(points, (list, tuple)):
            if isinstance(points, (str, bytes, bytearray)) or not hasattr(points, "__iter__"):
                rejected.append({"category": code, "index": None, "measurement": None,
                                 "reason": "'%s' must be a list of points, not %s" % (code, _type_name(points))})
                continue
            points = list(points)  # a generator or other iterable of points
        encoded = []
        indices = None
        for index, point in enumerate(points):
            text, reason = _encode_point(point, dumps)
            if reason is None:
                encoded.append(text)
                if indices is not None:
                    indices.append(index)
            else:
                if indices is None:
                    indices = list(range(len(encoded)))
                rejected.append(_rejection(code, index, point, reason))
        if encoded:
            categories.append((code, encoded, indices, points))
    return categories, rejected


# How many rejections an X-Pythond-Rejected header details (the rest are counted).
_REJECTED_HEADER_DETAILS = 5


def _rejected_header(rejections):
    """X-Pythond-Rejected: percent-encoded JSON {"count": N, "first": [{"measurement",
    "reason", "label"}, ...]} naming the points of one category the shim could not send."""
    first = [{"measurement": r.get("measurement"), "reason": str(r.get("reason"))[:200],
              "label": r.get("label")}
             for r in rejections[:_REJECTED_HEADER_DETAILS]]
    text = json.dumps({"count": len(rejections), "first": first}, ensure_ascii=True)
    return urllib.parse.quote(text, safe="")


def _rejection(code, index, point, reason):
    measurement = point.get("measurement") if isinstance(point, dict) else None
    if not isinstance(measurement, str):
        measurement = None
    elif len(measurement) > 256:
        measurement = measurement[:256] + "..."
    return {"category": code, "index": index, "measurement": measurement, "reason": reason,
            "label": _rejection_label(point)}


def _rejection_label(point):
    """The agent's reason label: a NaN or infinite field is ``invalid_field_value``,
    exactly as when the same point arrives as line protocol over HTTP; anything else
    JSON cannot carry is ``not_json_serializable`` (docs/POINTS.md)."""
    fields = point.get("fields") if isinstance(point, dict) else None
    if isinstance(fields, dict):
        for value in fields.values():
            if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
                return "invalid_field_value"
    return "not_json_serializable"


def _encode_point(point, dumps):
    """JSON for one point, or ``(None, reason)`` if JSON cannot carry it.

    The fast path -- a dict whose tag values are str and whose field values are str,
    int, float, bool or None -- costs one type check per value plus the C encoder;
    everything else goes through ``_sanitized``, which converts what it safely can and
    names the first offending tag or field otherwise.
    """
    if type(point) is not dict:
        if not isinstance(point, dict):
            return None, "point is %s, not a dict" % _a(_type_name(point))
        point = dict(point)
    clean = True
    tags = point.get("tags")
    if tags:
        if type(tags) is dict:
            for value in tags.values():
                if type(value) is not _STR:
                    clean = False
                    break
        else:
            clean = False
    if clean:
        fields = point.get("fields")
        if fields:
            if type(fields) is dict:
                for value in fields.values():
                    t = type(value)
                    if t is not _STR and t is not _INT and t is not _FLOAT and t is not _BOOL and value is not None:
                        clean = False
                        break
            else:
                clean = False
    if not clean:
        point, reason = _sanitized(point)
        if reason is not None:
            return None, reason
    try:
        text = dumps(point)
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        return None, _explain(point, e)
    # ensure_ascii writes a lone surrogate (undecodable bytes smuggled into a str by
    # surrogateescape) as a \udXXX escape that strict JSON parsers refuse; look closer
    # only when such an escape appears at all.
    if "\\ud" in text:
        reason = _surrogate_problem(point)
        if reason is not None:
            return None, reason
    return text, None


def _a(noun):
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _sanitized(point):
    """A copy of ``point`` with convertible tag/field values converted, or a reason."""
    point = dict(point)
    tags = point.get("tags")
    if tags:
        if not isinstance(tags, dict):
            return None, "tags is %s, not a dict" % _a(_type_name(tags))
        clean_tags = {}
        for key, value in tags.items():
            if type(value) is _STR or isinstance(value, str):
                clean_tags[key] = str(value)
            elif isinstance(value, (bool, int, float)):
                # Tags are strings on the wire. A plain number or bool is unambiguous,
                # so it is converted the way Python prints it (True -> "True", 1.5 ->
                # "1.5") rather than failing the point.
                clean_tags[key] = str(value)
            elif value is None:
                return None, "tag %s is None; tag values must be strings" % _quoted(key)
            else:
                return None, "tag %s is %s; tag values must be strings" % (_quoted(key), _a(_type_name(value)))
        point["tags"] = clean_tags
    fields = point.get("fields")
    if fields:
        if not isinstance(fields, dict):
            return None, "fields is %s, not a dict" % _a(_type_name(fields))
        clean_fields = {}
        for key, value in fields.items():
            t = type(value)
            if t is _STR or t is _INT or t is _FLOAT or t is _BOOL or value is None:
                clean_fields[key] = value
            elif isinstance(value, (dict, list, tuple, set, frozenset)):
                return None, ("field %s is %s; field values must be int, float, bool or str"
                              % (_quoted(key), _a(_type_name(value))))
            elif isinstance(value, str):
                clean_fields[key] = str(value)
            elif isinstance(value, numbers.Integral):
                # int subclasses (IntEnum) and registered integers (numpy.int64).
                clean_fields[key] = int(value)
            elif isinstance(value, numbers.Real):
                # float subclasses and registered reals (numpy.float32, Fraction);
                # Decimal is deliberately not a numbers.Real and is rejected.
                clean_fields[key] = float(value)
            else:
                return None, "field %s is %s value, which JSON cannot carry" % (_quoted(key), _a(_type_name(value)))
        point["fields"] = clean_fields
    return point, None


def _quoted(key):
    return "'%s'" % (key,) if isinstance(key, str) else repr(key)


def _explain(point, error):
    """Name the value that made the encoder fail."""
    for section, label in (("fields", "field"), ("tags", "tag")):
        values = point.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                reason = _value_problem(value)
                if reason is not None:
                    return "%s %s %s" % (label, _quoted(key), reason)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    return "%s key %r is %s; keys must be strings" % (label, key, _a(_type_name(key)))
    for key, value in point.items():
        if key in ("fields", "tags"):
            continue
        reason = _value_problem(value)
        if reason is not None:
            return "%s %s" % (key, reason)
    return "the point cannot be encoded as JSON (%s: %s)" % (type(error).__name__, error)


def _value_problem(value):
    if isinstance(value, float):
        if value != value:
            return "is NaN, which JSON cannot carry"
        if value in (float("inf"), float("-inf")):
            return "is %sInfinity, which JSON cannot carry" % ("-" if value < 0 else "+")
        return None
    try:
        _dumps_compact(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return "is %s value, which JSON cannot carry" % _a(_type_name(value))
    return None


def _surrogate_problem(point):
    def bad(text):
        try:
            text.encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True

    for section, label in (("fields", "field"), ("tags", "tag")):
        values = point.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(key, str) and bad(key):
                    return "%s name %r contains undecodable bytes (a lone surrogate)" % (label, key)
                if isinstance(value, str) and bad(value):
                    return "%s %s contains undecodable bytes (a lone surrogate)" % (label, _quoted(key))
    for key, value in point.items():
        if isinstance(value, str) and bad(value):
            return "%s contains undecodable bytes (a lone surrogate)" % key
    return None


# ---------------------------------------------------------------------- report frames

def _header_value(value):
    if not value:
        return "null"
    if isinstance(value, str):
        return _dumps_compact(value)
    return _dumps_compact(str(value))


def _report_header(plugin_json, data):
    """The frame up to (not including) ``,"data":``."""
    input_name = data.get("input")
    precision = data.get("precision")
    ignore = data.get("ignore_global_tags")
    version = data.get("version")
    if input_name is None and precision is None and ignore is None and not version:
        return '{"t":"report","plugin":' + plugin_json + ',"input":null,"precision":null,"ignore_global_tags":false'
    if ignore is None:
        ignore = "false"
    elif isinstance(ignore, (bool, int, float, str)):
        # Passed through: the agent accepts DataKit's spellings ("true", 1, True).
        try:
            ignore = _dumps_compact(ignore)
        except ValueError:
            ignore = "false"
    else:
        ignore = "true" if ignore else "false"
    header = ('{"t":"report","plugin":' + plugin_json
              + ',"input":' + _header_value(input_name)
              + ',"precision":' + _header_value(precision)
              + ',"ignore_global_tags":' + ignore)
    if version:
        header += ',"version":' + _header_value(version)
    return header


def _with_instance_tags(data, tags):
    """``data`` with ``tags`` added to each point that has neither a tag nor a field of
    that name (the point's own wins, as with the input's tags). Copies; never changes
    the caller's dicts."""
    out = dict(data)
    for code, _path in _CATEGORIES:
        points = data.get(code)
        if not isinstance(points, list):
            continue
        tagged = []
        for point in points:
            if isinstance(point, dict):
                own = point.get("tags")
                fields = point.get("fields")
                merged = dict(own) if isinstance(own, dict) else {}
                for key, value in tags.items():
                    if key not in merged and not (isinstance(fields, dict) and key in fields):
                        merged[key] = value
                point = dict(point)
                point["tags"] = merged
            tagged.append(point)
        out[code] = tagged
    return out


def _report_frames(plugin_json, data, max_frame):
    """The ``report`` frames (str, ASCII, newline-terminated) for one report() call.

    Usually one frame: each point is encoded once and the frame is a concatenation of
    those strings. Only a report that would exceed ``max_frame`` bytes takes the
    packing path, which splits it into several frames and rejects a point too big for
    any frame.
    """
    if not isinstance(data, dict):
        _warn("report() needs a dict like {'M': [...]}, got %s; nothing sent" % _type_name(data))
        return ()
    categories, rejected = _encode_report(data, _dumps_compact)
    if not categories and not rejected:
        return ()
    header = _report_header(plugin_json, data)
    if len(categories) == 1 and not rejected:
        code, points, _indices, _source = categories[0]
        frame = header + ',"data":{"' + code + '":[' + ",".join(points) + ']},"rejected":[]}\n'
        if len(frame) <= max_frame:
            return (frame,)
        return _packed_frames(header, categories, rejected, max_frame)
    parts = [header, ',"data":{']
    for code, points, _indices, _source in categories:
        if len(parts) > 2:
            parts.append(',"')
        else:
            parts.append('"')
        parts.append(code)
        parts.append('":[')
        parts.append(",".join(points))
        parts.append(']')
    parts.append('},"rejected":[')
    if rejected:
        parts.append(",".join(_dumps_compact(r) for r in rejected))
    parts.append(']}\n')
    frame = "".join(parts)
    if len(frame) <= max_frame:
        return (frame,)
    return _packed_frames(header, categories, rejected, max_frame)


def _packed_frames(header, categories, rejected, max_frame):
    """Split an oversized report into frames of at most ``max_frame`` bytes."""
    empty = header + ',"data":{},"rejected":[]}\n'
    base = len(empty)
    # The largest per-category wrapper is ',"CO":[]'.
    room = max_frame - base - len(',"CO":[]')
    items = []
    rejected = list(rejected)
    for code, points, indices, source in categories:
        for position, text in enumerate(points):
            if len(text) > room:
                index = position if indices is None else indices[position]
                rejected.append(_rejection(code, index, source[index],
                                           "point is %d bytes, more than the %d-byte frame limit"
                                           % (len(text), max_frame)))
            else:
                items.append((code, text))
    rejected.sort(key=lambda r: ([c for c, _ in _CATEGORIES].index(r["category"]), r["index"] if r["index"] is not None else -1))

    frames = []
    current = {}  # code -> [point json], insertion-ordered
    current_rejected = []
    size = base

    def flush():
        parts = [header, ',"data":{']
        first = True
        for code, texts in current.items():
            parts.append('"' if first else ',"')
            first = False
            parts.append(code + '":[' + ",".join(texts) + ']')
        parts.append('},"rejected":[' + ",".join(current_rejected) + ']}\n')
        frames.append("".join(parts))

    for code, text in items:
        texts = current.get(code)
        extra = len(text) + 1 if texts else len(text) + len(',"CO":[]')
        if size + extra > max_frame and (current or current_rejected):
            flush()
            current, current_rejected, size = {}, [], base
            texts = None
            extra = len(text) + len(',"CO":[]')
        if texts is None:
            current[code] = [text]
        else:
            texts.append(text)
        size += extra
    for rejection in rejected:
        text = _dumps_compact(rejection)
        extra = len(text) + 1
        if size + extra > max_frame and (current or current_rejected):
            flush()
            current, current_rejected, size = {}, [], base
        current_rejected.append(text)
        size += extra
    if current or current_rejected:
        flush()
    return frames


# ---------------------------------------------------------------------- DataKit's logging helpers

def init_log():
    """Kept for scripts that call it. DataKit opened a log file in the home directory;
    under pythond the framework's messages go to stderr, which the agent logs."""
    DataKitFramework.is_init_log = True


def mylog(msg, *args, **kwargs):
    if DataKitFramework.is_init_log is False:
        init_log()
    try:
        text = (str(msg) % args) if args else str(msg)
    except (TypeError, ValueError):
        text = " ".join(str(part) for part in (msg,) + args)
    _warn(text)
