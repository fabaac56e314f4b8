"""How the shim turns a report into frames: rejection of what JSON cannot carry, frame
splitting at the size limit. (What a report costs is measured by bench/pipe_throughput.py,
not asserted here: timing goals belong in benchmarks, docs/BENCHMARKS.md.)

A point JSON cannot carry (NaN, ±Inf, nested values, bytes, datetimes, objects, lone
surrogates, cycles) must be rejected *alone*, with its category, index, measurement and
a reason that names the tag or field; its neighbours are sent in order.
"""

import contextlib
import datetime
import decimal
import enum
import fractions
import io
import json
import unittest

from harness import Collector, PipeCapture
import datakit_framework as dkf


def frames_for(data, max_frame=4 * 1024 * 1024, plugin='"p.P"'):
    return [json.loads(frame) for frame in dkf._report_frames(plugin, data, max_frame)]


class Level(enum.IntEnum):
    HIGH = 3


class RejectionTest(unittest.TestCase):

    def report_one(self, bad_point):
        """Send [good, bad, good]; return (measurements sent, the rejected entries)."""
        frames = frames_for({"M": [{"measurement": "before", "tags": {"a": "b"}, "fields": {"v": 1}},
                                   bad_point,
                                   {"measurement": "after", "tags": {"a": "b"}, "fields": {"v": 2}}]})
        self.assertEqual(len(frames), 1)
        return [p["measurement"] for p in frames[0]["data"].get("M", [])], frames[0]["rejected"]

    def assertRejected(self, bad_point, *reason_parts):
        sent, rejected = self.report_one(bad_point)
        self.assertEqual(sent, ["before", "after"], "neighbours of a bad point are sent, in order")
        self.assertEqual(len(rejected), 1)
        entry = rejected[0]
        self.assertEqual((entry["category"], entry["index"]), ("M", 1))
        self.assertEqual(entry["measurement"], bad_point.get("measurement") if isinstance(bad_point, dict) else None)
        for part in reason_parts:
            self.assertIn(part, entry["reason"])
        return entry["reason"]

    def test_nan_and_infinities(self):
        self.assertEqual(self.assertRejected({"measurement": "m", "fields": {"ok": 1, "v": float("nan")}}),
                         "field 'v' is NaN, which JSON cannot carry")
        self.assertRejected({"measurement": "m", "fields": {"v": float("inf")}}, "'v'", "+Infinity")
        self.assertRejected({"measurement": "m", "fields": {"v": float("-inf")}}, "'v'", "-Infinity")

    def test_nested_values_in_fields(self):
        self.assertRejected({"measurement": "m", "fields": {"d": {"x": 1}}}, "field 'd'", "dict")
        self.assertRejected({"measurement": "m", "fields": {"l": [1, 2]}}, "field 'l'", "list")

    def test_values_json_cannot_encode(self):
        self.assertRejected({"measurement": "m", "fields": {"b": b"raw"}}, "field 'b'", "bytes")
        self.assertRejected({"measurement": "m", "fields": {"o": object()}}, "field 'o'", "object")
        self.assertRejected({"measurement": "m", "fields": {"d": decimal.Decimal("1.5")}}, "field 'd'", "Decimal")
        self.assertRejected({"measurement": "m", "fields": {"v": 1}, "time": datetime.datetime(2024, 1, 1)},
                            "time", "datetime")

    def test_bad_tags(self):
        self.assertRejected({"measurement": "m", "tags": {"t": ["a"]}, "fields": {"v": 1}}, "tag 't'", "list")
        self.assertRejected({"measurement": "m", "tags": {"t": {"a": 1}}, "fields": {"v": 1}}, "tag 't'", "dict")
        self.assertRejected({"measurement": "m", "tags": {"t": b"x"}, "fields": {"v": 1}}, "tag 't'", "bytes")
        self.assertRejected({"measurement": "m", "tags": {"t": None}, "fields": {"v": 1}}, "tag 't'", "None")
        self.assertRejected({"measurement": "m", "tags": ["a", "b"], "fields": {"v": 1}}, "tags is a list")

    def test_not_a_point(self):
        self.assertRejected(["measurement", "m"], "point is a list")
        self.assertRejected("m,a=b v=1", "point is a str")

    def test_lone_surrogate(self):
        undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")
        self.assertRejected({"measurement": "m", "fields": {"path": undecodable}}, "field 'path'", "surrogate")

    def test_self_reference(self):
        fields = {"v": 1}
        fields["me"] = fields
        self.assertRejected({"measurement": "m", "fields": fields}, "field 'me'")

    def test_plain_numbers_as_tags_are_converted(self):
        frames = frames_for({"M": [{"measurement": "m", "tags": {"i": 7, "f": 1.5, "b": True, "s": "x"},
                                    "fields": {"v": 1}}]})
        self.assertEqual(frames[0]["data"]["M"][0]["tags"], {"i": "7", "f": "1.5", "b": "True", "s": "x"})
        self.assertEqual(frames[0]["rejected"], [])

    def test_registered_numbers_as_fields_are_converted(self):
        frames = frames_for({"M": [{"measurement": "m", "fields": {"level": Level.HIGH,
                                                                   "ratio": fractions.Fraction(1, 4)}}]})
        fields = frames[0]["data"]["M"][0]["fields"]
        self.assertEqual(fields, {"level": 3, "ratio": 0.25})
        self.assertIs(type(fields["level"]), int)

    def test_valid_values_pass_untouched(self):
        point = {"measurement": "m", "tags": {"host": "h\u00e9", "emoji": "\U0001F600"},
                 "fields": {"s": "x\ny\"z", "i": 2 ** 63, "f": -0.5, "b": False, "n": None}, "time": 1700000000123}
        frames = frames_for({"L": [point]})
        self.assertEqual(frames[0]["data"]["L"], [point])

    def test_indices_are_per_category_and_rejections_are_ordered(self):
        nan = {"measurement": "bad", "fields": {"v": float("nan")}}
        good = {"measurement": "good", "fields": {"v": 1}}
        frames = frames_for({"L": [nan, good], "M": [good, good, nan], "E": "oops"})
        self.assertEqual(len(frames), 1)
        self.assertEqual({k: len(v) for k, v in frames[0]["data"].items()}, {"M": 2, "L": 1})
        self.assertEqual([(r["category"], r["index"]) for r in frames[0]["rejected"]],
                         [("M", 2), ("L", 0), ("E", None)])
        self.assertIn("'E' must be a list of points", frames[0]["rejected"][2]["reason"])

    def test_only_rejections_still_make_a_frame(self):
        frames = frames_for({"M": [{"measurement": "bad", "fields": {"v": float("nan")}}]})
        self.assertEqual(len(frames), 1)
        self.assertEqual(frames[0]["data"], {})
        self.assertEqual(len(frames[0]["rejected"]), 1)

    def test_any_iterable_of_points_is_accepted(self):
        frames = frames_for({"M": ({"measurement": "m%d" % i, "fields": {"v": i}} for i in range(3))})
        self.assertEqual([p["measurement"] for p in frames[0]["data"]["M"]], ["m0", "m1", "m2"])

    def test_a_lone_dict_is_one_point(self):
        frames = frames_for({"M": {"measurement": "m", "fields": {"v": 1}}})
        self.assertEqual(frames[0]["data"]["M"], [{"measurement": "m", "fields": {"v": 1}}])

    def test_report_of_a_non_dict_sends_nothing(self):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.assertEqual(dkf._report_frames('"p.P"', [1, 2], 1 << 20), ())
        self.assertIn("report() needs a dict", err.getvalue())


class FrameSplittingTest(unittest.TestCase):

    def points(self, count, pad=40):
        return [{"measurement": "m%03d" % i, "tags": {"k": "v" * pad}, "fields": {"i": i}} for i in range(count)]

    def test_big_report_is_split_under_the_limit_without_losing_or_reordering(self):
        limit = 2048
        metrics, logs = self.points(120), self.points(30)
        raw = dkf._report_frames('"p.P"', {"M": metrics, "L": logs, "input": "in"}, limit)
        self.assertGreater(len(raw), 5)
        for frame in raw:
            self.assertLessEqual(len(frame.encode()), limit)
            self.assertTrue(frame.endswith("\n") and frame.count("\n") == 1)
        frames = [json.loads(f) for f in raw]
        self.assertTrue(all(f["input"] == "in" and f["plugin"] == "p.P" for f in frames))
        self.assertEqual([p for f in frames for p in f["data"].get("M", [])], metrics)
        self.assertEqual([p for f in frames for p in f["data"].get("L", [])], logs)
        self.assertEqual([r for f in frames for r in f["rejected"]], [])

    def test_point_larger_than_the_limit_is_rejected_alone(self):
        limit = 4096
        huge = {"measurement": "huge", "fields": {"blob": "x" * 10000}}
        data = {"M": self.points(3) + [huge] + self.points(2)}
        raw = dkf._report_frames('"p.P"', data, limit)
        frames = [json.loads(f) for f in raw]
        self.assertTrue(all(len(f.encode()) <= limit for f in raw))
        self.assertEqual([p["measurement"] for f in frames for p in f["data"].get("M", [])],
                         ["m000", "m001", "m002", "m000", "m001"])
        rejected = [r for f in frames for r in f["rejected"]]
        self.assertEqual(len(rejected), 1)
        self.assertEqual((rejected[0]["index"], rejected[0]["measurement"]), (3, "huge"))
        self.assertIn("4096-byte frame limit", rejected[0]["reason"])

    def test_oversized_point_from_a_generator_is_named(self):
        points = self.points(2) + [{"measurement": "huge", "fields": {"blob": "x" * 5000}}]
        frames = frames_for({"M": (p for p in points)}, max_frame=2048)
        rejected = [r for f in frames for r in f["rejected"]]
        self.assertEqual([(r["index"], r["measurement"]) for r in rejected], [(2, "huge")])

    def test_many_rejections_are_split_too(self):
        limit = 1024
        data = {"M": [{"measurement": "bad%d" % i, "fields": {"v": float("nan")}} for i in range(100)]}
        raw = dkf._report_frames('"p.P"', data, limit)
        self.assertGreater(len(raw), 1)
        self.assertTrue(all(len(f.encode()) <= limit for f in raw))
        rejected = [r for f in raw for r in json.loads(f)["rejected"]]
        self.assertEqual([r["index"] for r in rejected], list(range(100)))

    def test_split_through_the_pipe(self):
        pipe = PipeCapture(max_frame=1500)
        self.addCleanup(pipe.close)
        collector = Collector()
        points = self.points(50)
        collector.report({"M": points})
        got = []
        while len(got) < len(points):
            frame = pipe.frame()
            self.assertEqual(frame["t"], "report")
            got.extend(frame["data"]["M"])
        self.assertEqual(got, points)


if __name__ == "__main__":
    unittest.main()
