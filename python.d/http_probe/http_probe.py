#encoding: utf-8
"""HTTP endpoint probe: is each URL up, how fast does it answer, when does its TLS
certificate expire.

Every run requests each URL once (GET, redirects not followed) and reports one metric
point per URL:

    measurement  http_probe
    tags         url, result   result: ok | http_error | timeout | refused |
                                       tls_error | dns_error | error
    fields       up             1 if an HTTP answer came back with a status below 400
                 status_code    the HTTP status (absent if no answer)
                 latency_ms     time until the response headers arrived
                 tls_days_left  days until the certificate's notAfter (https only,
                                absent if the TLS handshake failed)

A URL that is down is data (up=0 and a `result`), never an exception.

Settings (from the input's options, else the environment set with the input's `envs`):

    urls      HTTP_PROBE_URLS     comma-separated URLs (required; none = nothing reported)
    timeout   HTTP_PROBE_TIMEOUT  seconds per request, default 5
    ca_file   HTTP_PROBE_CA_FILE  PEM bundle to verify TLS with (default: system CAs),
                                  e.g. for an internal CA or a self-signed endpoint;
                                  one that cannot be read is reported and the
                                  system CAs are used

Example input (conf.d/http_probe.conf):

    [[inputs.pythond]]
      name = "http_probe"
      cmd  = "python3"
      dirs = ["/usr/lib/pythond/python.d/http_probe"]
      interval = "30s"
      envs = ["HTTP_PROBE_URLS=https://example.com/,http://127.0.0.1:8080/health",
              "HTTP_PROBE_TIMEOUT=5"]

Standard library only; Python 3.8+.
"""

import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from datakit_framework import DataKitFramework
from pythond_settings import as_list, positive_number, setting


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer: report its status instead of following it.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class HttpProbe(DataKitFramework):
    name = "http_probe"
    interval = 30

    def run(self):
        urls = as_list(setting(self, "urls", "HTTP_PROBE_URLS", ""))
        if not urls:
            print("http_probe: no URLs configured: set option `urls` (in [inputs.pythond.options]) or the variable HTTP_PROBE_URLS (in the input's envs); nothing to do")
            return
        timeout = positive_number(setting(self, "timeout", "HTTP_PROBE_TIMEOUT", 5), 5.0,
                                  "http_probe: timeout")
        ca_file = setting(self, "ca_file", "HTTP_PROBE_CA_FILE", None)
        context = _tls_context(ca_file)
        points = [self.probe(url, timeout, context) for url in urls]
        self.report({"M": points})

    def probe(self, url, timeout, context):
        fields = {"up": 0}
        result = "ok"
        opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=context))
        request = urllib.request.Request(url, method="GET",
                                         headers={"User-Agent": "pythond-http-probe"})
        start = time.monotonic()
        try:
            with opener.open(request, timeout=timeout) as response:
                fields["latency_ms"] = round((time.monotonic() - start) * 1000.0, 3)
                fields["status_code"] = response.status
        except urllib.error.HTTPError as e:  # an answer, with a status >= 300
            fields["latency_ms"] = round((time.monotonic() - start) * 1000.0, 3)
            fields["status_code"] = e.code
            e.close()
        except Exception as e:  # no answer at all
            result = _failure(e)
            print("http_probe: %s: %s" % (url, e))
        if "status_code" in fields:
            if fields["status_code"] < 400:
                fields["up"] = 1
            else:
                result = "http_error"
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "https" and result != "tls_error":
            days = _tls_days_left(parsed, timeout, context)
            if days is not None:
                fields["tls_days_left"] = days
        return {"measurement": "http_probe", "tags": {"url": url, "result": result},
                "fields": fields}


def _tls_context(ca_file):
    """Verifying TLS context: with `ca_file`, else (or if it cannot be read) system CAs."""
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            print("http_probe: ca_file %s: %s; verifying with the system CAs" % (ca_file, e))
    return ssl.create_default_context()


def _failure(error):
    reason = getattr(error, "reason", error)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(reason, ssl.SSLError) or isinstance(error, ssl.SSLError):
        return "tls_error"
    if isinstance(reason, ConnectionRefusedError):
        return "refused"
    if isinstance(reason, socket.gaierror):
        return "dns_error"
    return "error"


def _tls_days_left(parsed, timeout, context):
    """Days until the peer certificate's notAfter, or None if the handshake fails."""
    host = parsed.hostname
    port = parsed.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                cert = tls.getpeercert()
    except (OSError, ssl.SSLError) as e:
        print("http_probe: TLS %s:%s: %s" % (host, port, e))
        return None
    not_after = cert.get("notAfter") if cert else None
    if not not_after:
        return None
    return round((ssl.cert_time_to_seconds(not_after) - time.time()) / 86400.0, 3)
