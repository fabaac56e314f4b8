"""The shim's public API against DataKit's own expectations.

The expected payloads are the exact request bodies DataKit's integration test for its
pythond input (internal/plugins/inputs/pythond/integrate_test.go) accepts from
DataKit's ``datakit_framework.py``. Over HTTP the shim must send those bytes; through
the pipe the same points must arrive field by field (and key by key, in order).
Also covered: argument checks, ``report()`` return values, every category key, the
query parameters, and the name-mangled attributes old scripts use.
"""

import contextlib
import io
import json
import socket
import unittest

import harness
from harness import Collector, PipeCapture
import datakit_framework as dkf

# --- Payloads from DataKit's integrate_test.go ------------------------------------------
DK_RAW_METRIC = ('[{"measurement": "measurement1", "tags": {"tag_name": "tag_value"}, '
                 '"fields": {"count": 1}}]')
DK_FEED_METRIC = ('[{"measurement": "measurement2", "tags": {"tag1": "val1", "tag2": "val2"}, '
                  '"fields": {"custom_field1": "val1", "custom_field2": 1000, "custom_key1": "custom_value1", '
                  '"custom_key2": "custom_value2", "custom_key3": "custom_value3"}, "time": null}]')
DK_FEED_LOGGING = ('[{"measurement": "measurement3", "tags": {"tag1": "val1", "tag2": "val2"}, '
                   '"fields": {"message": "This is the message for testing", "custom_key1": "custom_value1", '
                   '"custom_key2": "custom_value2", "custom_key3": "custom_value3"}, "time": null}]')
DK_FEED_OBJECT = ('[{"measurement": "measurement4", "tags": {"tag1": "val1", "tag2": "val2", "name": "name"}, '
                  '"fields": {"custom_field1": "val1", "custom_field2": 1000, "custom_key1": "custom_value1", '
                  '"custom_key2": "custom_value2", "custom_key3": "custom_value3"}, "time": null}]')
DK_USER_EVENT = ('[{"measurement": "measurement", "tags": {"tag1": "val1", "tag2": "val2"}, '
                 '"fields": {"df_date_range": 10, "df_source": "user", "df_user_id": "user_id", '
                 '"df_status": "info", "df_event_id": "event_id", "df_title": "title", "df_message": "message", '
                 '"custom_key1": "custom_value1", "custom_key2": "custom_value2", "custom_key3": "custom_value3"}}]')
DK_MONITOR_EVENT = ('[{"measurement": "measurement", "tags": {"tag1": "val1", "tag2": "val2"}, '
                    '"fields": {"df_date_range": 10, "df_source": "monitor", '
                    '"df_dimension_tags": "{\\"host\\":\\"web01\\"}", "df_status": "info", '
                    '"df_event_id": "event_id", "df_title": "title", "df_message": "message", '
                    '"custom_key1": "custom_value1", "custom_key2": "custom_value2", "custom_key3": "custom_value3"}}]')
DK_SYSTEM_EVENT = ('[{"measurement": "measurement", "tags": {"tag1": "val1", "tag2": "val2"}, '
                   '"fields": {"df_date_range": 10, "df_source": "system", "df_status": "info", '
                   '"df_event_id": "event_id", "df_title": "feed_system_event", "df_message": "message", '
                   '"custom_key1": "custom_value1", "custom_key2": "custom_value2", "custom_key3": "custom_value3"}}]')

TAGS = {"tag1": "val1", "tag2": "val2"}
FIELDS = {"custom_field1": "val1", "custom_field2": 1000}
KWARGS = {"custom_key1": "custom_value1", "custom_key2": "custom_value2", "custom_key3": "custom_value3"}
EVENT = dict(tags=TAGS, df_date_range=10, df_status="info", df_event_id="event_id", df_message="message")

# The calls DataKit's test script makes, paired with what DataKit's server expects.
DATAKIT_CASES = [
    ("report", lambda c: c.report({"M": [{"measurement": "measurement1", "tags": {"tag_name": "tag_value"},
                                          "fields": {"count": 1}}], "input": "py_from_docker"}),
     "/v1/write/metric", "input=py_from_docker", DK_RAW_METRIC),
    ("feed_metric", lambda c: c.feed_metric(measurement="measurement2", tags=TAGS, fields=FIELDS, **KWARGS),
     "/v1/write/metric", "", DK_FEED_METRIC),
    ("feed_logging", lambda c: c.feed_logging(source="measurement3", tags=TAGS,
                                              message="This is the message for testing", **KWARGS),
     "/v1/write/logging", "", DK_FEED_LOGGING),
    ("feed_object", lambda c: c.feed_object(cls="measurement4", name="name", tags=TAGS, fields=FIELDS, **KWARGS),
     "/v1/write/object", "", DK_FEED_OBJECT),
    ("feed_user_event", lambda c: c.feed_user_event(df_user_id="user_id", df_title="title", **dict(EVENT, **KWARGS)),
     "/v1/write/keyevent", "", DK_USER_EVENT),
    ("feed_monitor_event", lambda c: c.feed_monitor_event(df_dimension_tags='{"host":"web01"}', df_title="title",
                                                          **dict(EVENT, **KWARGS)),
     "/v1/write/keyevent", "", DK_MONITOR_EVENT),
    ("feed_system_event", lambda c: c.feed_system_event(df_title="feed_system_event", **dict(EVENT, **KWARGS)),
     "/v1/write/keyevent", "", DK_SYSTEM_EVENT),
]


class HttpPayloadTest(unittest.TestCase):
    """Standalone (no runner): the shim is DataKit's framework, byte for byte."""

    def setUp(self):
        self.server = harness.RecordingHTTPServer(answer=b'{"ok":true}')
        self.addCleanup(self.server.close)
        self.assertIsNone(dkf._transport, "no runner transport may be installed in these tests")
        self.collector = Collector(ip="127.0.0.1", port=self.server.port)

    def test_every_datakit_payload_is_byte_identical(self):
        for label, call, path, query, body in DATAKIT_CASES:
            with self.subTest(label):
                before = len(self.server.requests)
                result = call(self.collector)
                request = self.server.wait_requests(before + 1)[-1]
                self.assertEqual(request["path"], path)
                self.assertEqual(request["query"], query)
                self.assertEqual(request["body"].decode(), body)
                self.assertEqual(request["content_type"], "application/json")
                self.assertEqual(result, '{"ok":true}', "report() returns DataKit's answer as text")

    def test_each_category_key_posts_to_its_endpoint_in_datakit_order(self):
        point = {"measurement": "m", "tags": {}, "fields": {"v": 1}}
        data = {key: [point] for key in ("E", "CO", "O", "R", "L", "M")}
        self.collector.report(data)
        requests = self.server.wait_requests(6)
        self.assertEqual([r["path"] for r in requests],
                         ["/v1/write/metric", "/v1/write/logging", "/v1/write/rum", "/v1/write/object",
                          "/v1/write/custom_object", "/v1/write/keyevent"])
        for request in requests:
            self.assertEqual(json.loads(request["body"]), [point])

    def test_query_parameters_follow_datakit(self):
        self.collector.report({"M": [{"measurement": "m", "fields": {"v": 1}}], "precision": "s",
                               "input": "my input", "ignore_global_tags": "true", "version": "1.2"})
        request = self.server.wait_requests(1)[0]
        self.assertEqual(request["query"], "precision=s&input=my%20input&ignore_global_tags=true&version=1.2")

    def test_http_error_status_returns_the_body_and_does_not_raise(self):
        self.server.status = 400
        self.server.answer = b'{"error_code":"datakit.invalidPoint","message":"bad"}'
        with contextlib.redirect_stderr(io.StringIO()) as err:
            result = self.collector.feed_metric(measurement="m", fields={"v": 1})
        self.assertEqual(json.loads(result)["error_code"], "datakit.invalidPoint")
        self.assertIn("HTTP 400", err.getvalue())

    def test_unreachable_datakit_returns_empty_string(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        collector = Collector(ip="127.0.0.1", port=port)
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.assertEqual(collector.feed_metric(measurement="m", fields={"v": 1}), "")
        self.assertIn("failed", err.getvalue())

    def test_standalone_posts_carry_no_pythond_headers(self):
        self.collector.feed_metric(measurement="m", fields={"v": 1})
        headers = self.server.wait_requests(1)[0]["headers"]
        for name in ("Authorization", "X-Pythond-Input", "X-Pythond-Plugin"):
            self.assertNotIn(name, headers)

    def test_http_transport_sends_token_input_and_plugin(self):
        # What the runner sets for transport = "http" (token from PYTHOND_HTTP_TOKEN).
        self.addCleanup(setattr, dkf, "_http_token", dkf._http_token)
        self.addCleanup(setattr, dkf, "_http_input", dkf._http_input)
        dkf._http_token = "t0ken"
        dkf._http_input = "my input"
        self.collector._pythond_id_json = json.dumps("mod.Café")
        self.collector.feed_metric(measurement="m", fields={"v": 1})
        self.collector.set_lasterror("my input", "boom")
        report, lasterror = self.server.wait_requests(2)
        self.assertEqual(report["headers"]["Authorization"], "Bearer t0ken")
        self.assertEqual(report["headers"]["X-Pythond-Input"], "my%20input")
        self.assertEqual(report["headers"]["X-Pythond-Plugin"], "mod.Caf%C3%A9")
        self.assertEqual(lasterror["headers"]["Authorization"], "Bearer t0ken")

    def test_empty_report_sends_nothing(self):
        self.assertEqual(self.collector.report({}), "")
        self.assertEqual(self.collector.report({"M": []}), "")
        self.assertEqual(self.server.requests, [])

    def test_set_lasterror_posts_like_datakit(self):
        self.collector.set_lasterror("my-input", "disk gone")
        request = self.server.wait_requests(1)[0]
        self.assertEqual(request["path"], "/v1/lasterror")
        self.assertEqual(request["body"].decode(), '{"input": "my-input", "err_content": "disk gone"}')

    def test_unrepresentable_point_is_dropped_alone_over_http(self):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.collector.report({"M": [{"measurement": "a", "fields": {"v": 1}},
                                         {"measurement": "b", "fields": {"v": float("nan")}},
                                         {"measurement": "c", "fields": {"v": 3}}]})
        self.assertIn("point 1 of 'M' not sent: field 'v' is NaN", err.getvalue())
        request = self.server.wait_requests(1)[0]
        self.assertEqual([p["measurement"] for p in json.loads(request["body"])], ["a", "c"])


class PipePayloadTest(unittest.TestCase):
    """Under the runner: the same points arrive in report frames, field by field."""

    def setUp(self):
        self.pipe = PipeCapture()
        self.addCleanup(self.pipe.close)
        self.collector = Collector()
        self.collector._pythond_id_json = '"mod.Collector"'

    def test_every_datakit_payload_arrives_field_by_field(self):
        codes = {"/v1/write/metric": "M", "/v1/write/logging": "L", "/v1/write/object": "O",
                 "/v1/write/keyevent": "E"}
        for label, call, path, query, body in DATAKIT_CASES:
            with self.subTest(label):
                self.assertEqual(call(self.collector), "")
                frame = self.pipe.frame()
                self.assertEqual(frame["t"], "report")
                self.assertEqual(frame["plugin"], "mod.Collector")
                self.assertEqual(frame["input"], query.partition("=")[2] or None)
                self.assertEqual(frame["rejected"], [])
                self.assertEqual(list(frame["data"]), [codes[path]])
                got = frame["data"][codes[path]]
                expected = json.loads(body)
                self.assertEqual(got, expected)
                for got_point, expected_point in zip(got, expected):
                    self.assertEqual(list(got_point), list(expected_point), "point key order")
                    for section in ("tags", "fields"):
                        self.assertEqual(list(got_point[section]), list(expected_point[section]),
                                         "%s key order" % section)

    def test_report_keys_pass_through(self):
        point = {"measurement": "m", "tags": {"a": "b"}, "fields": {"v": 1}, "time": 1700000000}
        self.collector.report({"M": [point], "L": [point], "O": [point], "CO": [point], "E": [point],
                               "R": [point], "input": "in", "precision": "s", "ignore_global_tags": True,
                               "version": "2"})
        frame = self.pipe.frame()
        self.assertEqual(list(frame["data"]), ["M", "L", "R", "O", "CO", "E"])
        for points in frame["data"].values():
            self.assertEqual(points, [point])
        self.assertEqual((frame["input"], frame["precision"], frame["ignore_global_tags"], frame["version"]),
                         ("in", "s", True, "2"))

    def test_absent_keys_have_protocol_defaults(self):
        self.collector.report({"M": [{"measurement": "m", "fields": {"v": 1}}]})
        frame = self.pipe.frame()
        self.assertEqual((frame["input"], frame["precision"], frame["ignore_global_tags"]), (None, None, False))
        self.assertNotIn("version", frame)

    def test_string_ignore_global_tags_is_passed_through(self):
        self.collector.report({"M": [{"measurement": "m", "fields": {"v": 1}}], "ignore_global_tags": "true"})
        self.assertEqual(self.pipe.frame()["ignore_global_tags"], "true")

    def test_instances_the_runner_did_not_create_report_as_null_plugin(self):
        Collector().feed_metric(measurement="m", fields={"v": 1})
        self.assertIsNone(self.pipe.frame()["plugin"])

    def test_set_lasterror_sends_a_lasterror_frame(self):
        self.assertEqual(self.collector.set_lasterror("my-input", "disk gone"), "")
        self.assertEqual(self.pipe.frame(), {"t": "lasterror", "plugin": "mod.Collector",
                                             "input": "my-input", "message": "disk gone"})

    def test_empty_report_sends_no_frame(self):
        self.collector.report({})
        self.collector.report({"M": [], "L": None})
        self.collector.report({"input": "x"})
        self.assertEqual(self.pipe.pending(), b"")

    def test_feed_helpers_do_not_modify_the_callers_dicts(self):
        tags, fields = {"t": "1"}, {"f": 1}
        self.collector.feed_metric(measurement="m", tags=tags, fields=fields, extra=2)
        self.collector.feed_object(cls="c", name="n", tags=tags, fields=fields, extra=2)
        self.assertEqual((tags, fields), ({"t": "1"}, {"f": 1}))
        metric, obj = self.pipe.frame(), self.pipe.frame()
        self.assertEqual(metric["data"]["M"][0]["fields"], {"f": 1, "extra": 2})
        self.assertEqual(obj["data"]["O"][0]["tags"], {"t": "1", "name": "n"})

    def test_feed_helpers_without_tags(self):
        self.collector.feed_metric(measurement="m", fields={"v": 1}, time=1700000000)
        self.collector.feed_object(cls="host", name="web01", fields={"up": True})
        self.collector.feed_system_event(df_status="ok", df_event_id="e", df_title="t")
        metric, obj, event = self.pipe.frame(), self.pipe.frame(), self.pipe.frame()
        self.assertEqual(metric["data"]["M"], [{"measurement": "m", "tags": {}, "fields": {"v": 1},
                                                 "time": 1700000000}])
        self.assertEqual(obj["data"]["O"][0]["tags"], {"name": "web01"})
        self.assertEqual(event["data"]["E"][0]["fields"]["df_message"], "")
        self.assertNotIn("time", event["data"]["E"][0])

    def test_kwargs_alone_are_fields(self):
        self.collector.feed_metric(measurement="m", cpu=1.5)
        self.assertEqual(self.pipe.frame()["data"]["M"][0]["fields"], {"cpu": 1.5})


class ArgumentCheckTest(unittest.TestCase):
    """Missing required arguments raise DataKit's ValueError before anything is sent."""

    def setUp(self):
        self.sent = []
        outer = self

        class Recording(object):
            def report(self, instance, data):
                outer.sent.append(data)
                return ""

        previous = dkf._transport
        dkf._transport = Recording()
        self.addCleanup(setattr, dkf, "_transport", previous)
        self.collector = Collector()

    def assertMissing(self, name, call):
        with self.assertRaises(ValueError) as caught:
            call()
        self.assertEqual(str(caught.exception), 'arguments missing "%s"' % name)
        self.assertEqual(self.sent, [])

    def test_feed_metric(self):
        self.assertMissing("measurement", lambda: self.collector.feed_metric(fields={"v": 1}))
        self.assertMissing("fields", lambda: self.collector.feed_metric(measurement="m"))
        self.assertMissing("fields", lambda: self.collector.feed_metric(measurement="m", fields={}))

    def test_feed_logging(self):
        self.assertMissing("source", lambda: self.collector.feed_logging(message="x"))
        self.assertMissing("message", lambda: self.collector.feed_logging(source="s"))

    def test_feed_object(self):
        self.assertMissing("cls", lambda: self.collector.feed_object(name="n", fields={"v": 1}))
        self.assertMissing("name", lambda: self.collector.feed_object(cls="c", fields={"v": 1}))

    def test_feed_user_event(self):
        ok = dict(df_user_id="u", df_status="ok", df_event_id="e", df_title="t")
        for missing in ("df_user_id", "df_status", "df_event_id", "df_title"):
            kwargs = dict(ok)
            del kwargs[missing]
            self.assertMissing(missing, lambda: self.collector.feed_user_event(**kwargs))
        self.assertMissing("df_date_range", lambda: self.collector.feed_user_event(df_date_range=0, **ok))

    def test_feed_monitor_event(self):
        ok = dict(df_dimension_tags='{"host":"a"}', df_status="ok", df_event_id="e", df_title="t")
        for missing in ("df_dimension_tags", "df_status", "df_event_id", "df_title"):
            kwargs = dict(ok)
            del kwargs[missing]
            self.assertMissing(missing, lambda: self.collector.feed_monitor_event(**kwargs))

    def test_feed_system_event(self):
        ok = dict(df_status="ok", df_event_id="e", df_title="t")
        for missing in ("df_status", "df_event_id", "df_title"):
            kwargs = dict(ok)
            del kwargs[missing]
            self.assertMissing(missing, lambda: self.collector.feed_system_event(**kwargs))

    def test_checkArgEmpty_is_public(self):
        with self.assertRaises(ValueError):
            self.collector.checkArgEmpty("x", "")
        self.collector.checkArgEmpty("x", "value")


class LegacyAttributesTest(unittest.TestCase):
    """Scripts written against older framework versions reach for these names."""

    def test_name_mangled_defaults(self):
        base = dkf.DataKitFramework
        self.assertEqual(base._DataKitFramework__dk_host, "127.0.0.1")
        self.assertEqual(base._DataKitFramework__dk_port, 9529)
        self.assertEqual(base._DataKitFramework__name, "DataKitFramework")
        self.assertEqual(base.name, "DataKitFramework")

    def test_ip_and_port_override_per_instance(self):
        collector = Collector(ip="10.0.0.7", port=9530)
        self.assertEqual(collector._DataKitFramework__dk_host, "10.0.0.7")
        self.assertEqual(collector.construct_url("v1/write/metric"), "http://10.0.0.7:9530/v1/write/metric")
        self.assertEqual(Collector().construct_url("v1/ping"), "http://127.0.0.1:9529/v1/ping")

    def test_old_style_private_name_in_subclass(self):
        class Old(dkf.DataKitFramework):
            __name = "Old"
            interval = 10

            def run(self):
                return self.__name

        self.assertEqual(Old().run(), "Old")

    def test_public_helpers_exist(self):
        for attr in ("run", "test", "report", "checkArgEmpty", "feed_metric", "feed_logging", "feed_object",
                     "feed_user_event", "feed_monitor_event", "feed_system_event", "set_lasterror",
                     "construct_url", "http_post_json", "http_post_raw", "http_post_data_core",
                     "pretty_json", "construct_json", "log_name", "is_init_log"):
            self.assertTrue(hasattr(dkf.DataKitFramework, attr), attr)
        self.assertTrue(callable(dkf.mylog) and callable(dkf.init_log))
        with self.assertRaises(NotImplementedError):
            dkf.DataKitFramework().run()


if __name__ == "__main__":
    unittest.main()
