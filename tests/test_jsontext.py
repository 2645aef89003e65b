"""Tests for fireworq.jsontext: docs/api.md, Conventions: request bodies, JSON text, payloads."""

from __future__ import annotations

import enum
import json
import sys
import time
from types import FrameType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from fireworq.errors import InvalidInput
from fireworq.jsontext import (
    Member,
    RawJSON,
    compact,
    encode,
    encode_indented,
    encode_str,
    get_int,
    get_number,
    get_string,
    parse_object,
    payload_echo,
    reread_payload,
    stored_payload,
    syntax_error,
)

EMPTY = "Request body is empty; a JSON object is expected"
NOT_UTF8 = "Request body is not valid UTF-8"
NOT_OBJECT = "Request body must be a JSON object"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)

json_fragments = st.lists(
    st.sampled_from(
        [b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b" ", b"\n", b"1", b"-", b"0", b".", b"e",
         b"NaN", b"Infinity", b"null", b"true", b'"a"', b"\\u", b"d800", b"\xff", b"\xc3\xa9",
         b"\xef\xbb\xbf", b"\x00", b"\t", b"x"]
    ),
    max_size=40,
).map(b"".join)


def _refuse(literal: str) -> None:
    raise ValueError(literal)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: Go's float text drops the fraction of integral floats, so 2.0 reads back as 2."""
    if isinstance(a, float) or isinstance(b, float):
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class ParseObjectTests(SynchronousTestCase):
    def assertInvalid(self, body: bytes, message: str) -> None:
        error = self.assertRaises(InvalidInput, parse_object, body)
        self.assertEqual(str(error), message)

    def test_members(self) -> None:
        """When the body is an object, each top-level member has its value and exact source text."""
        members = parse_object(
            b'{"url":"http://127.0.0.1:8000/work","payload":{"user": 42, "lang":"ja"},"timeout":10}'
        )
        self.assertEqual(list(members), ["url", "payload", "timeout"])
        self.assertEqual(members["url"], Member("http://127.0.0.1:8000/work", '"http://127.0.0.1:8000/work"'))
        self.assertEqual(members["payload"], Member({"user": 42, "lang": "ja"}, '{"user": 42, "lang":"ja"}'))
        self.assertEqual(members["timeout"], Member(10, "10"))

    def test_whitespace_everywhere(self) -> None:
        """When JSON whitespace surrounds every token, the raw texts start and end at the values."""
        members = parse_object(b' \t\r\n{ "a" :\n [ 1 , 2 ] ,\t"b":"x" } \n')
        self.assertEqual(members["a"], Member([1, 2], "[ 1 , 2 ]"))
        self.assertEqual(members["b"], Member("x", '"x"'))

    def test_empty_object(self) -> None:
        """When the body is {}, there are no members."""
        self.assertEqual(parse_object(b"{}"), {})
        self.assertEqual(parse_object(b" { } "), {})

    def test_duplicate_keys(self) -> None:
        """When a key occurs twice, the last occurrence counts."""
        members = parse_object(b'{"timeout":1,"url":"u","timeout":2}')
        self.assertEqual(members["timeout"], Member(2, "2"))

    def test_keys_case_sensitive(self) -> None:
        """When keys differ only in case, they are different members."""
        members = parse_object(b'{"URL":"a","url":"b"}')
        self.assertEqual(members["URL"].value, "a")
        self.assertEqual(members["url"].value, "b")

    def test_null_member(self) -> None:
        """When a member is null, it is present with value None and raw text null."""
        self.assertEqual(parse_object(b'{"payload":null}')["payload"], Member(None, "null"))

    def test_escaped_key(self) -> None:
        """When a key is written with escapes, it is unescaped."""
        self.assertEqual(list(parse_object(b'{"u\\u0072l":1}')), ["url"])

    def test_lone_surrogate(self) -> None:
        """When a string holds an escaped lone surrogate, it parses."""
        members = parse_object(b'{"payload":"\\ud800"}')
        self.assertEqual(members["payload"], Member("\ud800", '"\\ud800"'))

    def test_non_ascii(self) -> None:
        """When values hold non-ASCII characters, raw keeps them as characters."""
        members = parse_object('{"p":"日本 é"}'.encode())
        self.assertEqual(members["p"], Member("日本 é", '"日本 é"'))

    def test_empty_body(self) -> None:
        """When the body is empty or only JSON whitespace, it is reported as empty."""
        for body in [b"", b" ", b"\r\n\t "]:
            self.assertInvalid(body, EMPTY)

    def test_not_utf8(self) -> None:
        """When the body is not UTF-8, that is reported before any syntax check."""
        for body in [b'{"a":"\xff"}', b"\xff", b'{"a":"\xed\xa0\x80"}', b'{"a":"\xe2\x82"}', b"\xc0\x80"]:
            self.assertInvalid(body, NOT_UTF8)

    def test_bom(self) -> None:
        """When the body starts with a UTF-8 BOM, it is a syntax error."""
        self.assertInvalid(b'\xef\xbb\xbf{"a":1}', "Invalid JSON: Expecting value: line 1 column 1")

    def test_syntax_errors(self) -> None:
        """When the JSON is malformed, the message names what and where, the same on every
        Python version, also where CPython's own wording changed (3.13 says "Illegal trailing
        comma")."""
        cases = {
            b'{"url": }': "Expecting value: line 1 column 9",
            b'{"a":1,}': "Expecting property name enclosed in double quotes: line 1 column 8",
            b"{'a':1}": "Expecting property name enclosed in double quotes: line 1 column 2",
            b'{"a" 1}': "Expecting ':' delimiter: line 1 column 6",
            b'{"a":1 "b":2}': "Expecting ',' delimiter: line 1 column 8",
            b'{"a":[1,]}': "Expecting value: line 1 column 9",
            b'{"a":"x': "Unterminated string starting at: line 1 column 6",
            b'{"a":"\\x"}': "Invalid \\escape: line 1 column 7",
            b'{"a":"\x01"}': "Invalid control character at: line 1 column 7",
            b"{": "Expecting property name enclosed in double quotes: line 1 column 2",
            b'{\n  "a": 1,\n  "b": tru\n}': "Expecting value: line 3 column 8",
            b"x": "Expecting value: line 1 column 1",
            b'{"a":01}': "Expecting ',' delimiter: line 1 column 7",
            b'{"a":{"b":[1,2 3]}}': "Expecting ',' delimiter: line 1 column 16",
            b'{"a":1,"b"}': "Expecting ':' delimiter: line 1 column 11",
            b'{"a":"\\ud80"}': "Invalid \\uXXXX escape: line 1 column 8",
            b'{"a":"\\u12': "Invalid \\uXXXX escape: line 1 column 8",
            b'{"a":"\\ud800\\u12"}': "Invalid \\uXXXX escape: line 1 column 14",
            b'  {"a" : [}': "Expecting value: line 1 column 11",
            b'{"a":[1,2,]}': "Expecting value: line 1 column 11",
            b'{"a":{"b":1,}}': "Expecting property name enclosed in double quotes: line 1 column 13",
            b'{"a":[1]]': "Expecting ',' delimiter: line 1 column 9",
            b'{"a":-}': "Expecting value: line 1 column 6",
            b'{"a":1.}': "Expecting ',' delimiter: line 1 column 7",
            b'{"a":nul}': "Expecting value: line 1 column 6",
            b'{"a":"b\\': "Unterminated string starting at: line 1 column 6",
            b'{"a\tb":1}': "Invalid control character at: line 1 column 4",
        }
        for body, message in cases.items():
            self.assertInvalid(body, "Invalid JSON: " + message)

    @settings(deadline=None)
    @given(json_fragments)
    def test_syntax_checker_agrees_with_json(self, body: bytes) -> None:
        """When the json module of this Python refuses a text, the checker finds an error in
        it, and only then."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return
        try:
            json.loads(text, parse_constant=_refuse)
            valid = True
        except ValueError:  # JSONDecodeError, or NaN/Infinity
            valid = False
        except RecursionError:
            return
        self.assertEqual(syntax_error(text) is None, valid, text)

    def test_trailing_data(self) -> None:
        """When anything but whitespace follows the value, it is a syntax error."""
        self.assertInvalid(b'{"url":"x"} junk', "Invalid JSON: Extra data: line 1 column 13")
        self.assertInvalid(b'{"url":"x"}{}', "Invalid JSON: Extra data: line 1 column 12")
        self.assertInvalid(b"[1] x", "Invalid JSON: Extra data: line 1 column 5")
        self.assertInvalid(b'{"a":1}\x00', "Invalid JSON: Extra data: line 1 column 8")

    def test_only_json_whitespace(self) -> None:
        """When the body has whitespace that JSON does not allow, it is a syntax error."""
        self.assertInvalid(b'\x0b{"a":1}', "Invalid JSON: Expecting value: line 1 column 1")
        self.assertInvalid('{"a":1}\u00a0'.encode(), "Invalid JSON: Extra data: line 1 column 8")
        self.assertInvalid(b"\x0c", "Invalid JSON: Expecting value: line 1 column 1")

    def test_non_finite_literals(self) -> None:
        """When NaN, Infinity or -Infinity appear as values, they are syntax errors at their place."""
        cases = {
            b'{"a":NaN}': "line 1 column 6",
            b'{"a":Infinity}': "line 1 column 6",
            b'{"a":-Infinity}': "line 1 column 6",
            b'{"a":"NaN","b":[1,{"c":Infinity}]}': "line 1 column 24",
            b"NaN": "line 1 column 1",
            b"[-Infinity]": "line 1 column 2",
        }
        for body, where in cases.items():
            self.assertInvalid(body, "Invalid JSON: Expecting value: " + where)

    def test_non_finite_in_strings(self) -> None:
        """When NaN or Infinity are inside strings, they are just text."""
        members = parse_object(b'{"NaN":"Infinity","a":"-Infinity"}')
        self.assertEqual(members["NaN"].value, "Infinity")

    def test_not_an_object(self) -> None:
        """When the body is valid JSON but not an object (null included), it is refused as such."""
        for body in [b"null", b"[]", b'[{"url":"x"}]', b"1", b'"s"', b"true", b" false ", b"-0.5e3"]:
            self.assertInvalid(body, NOT_OBJECT)

    def test_nesting_limit(self) -> None:
        """When values nest 512 levels deep they parse; at 513 levels it is a syntax error."""
        ok = b'{"a":' + b"[" * 511 + b"]" * 511 + b"}"
        self.assertEqual(len(parse_object(ok)["a"].raw), 1022)
        too_deep = b'{"a":' + b"[" * 512 + b"]" * 512 + b"}"
        self.assertInvalid(too_deep, "Invalid JSON: nesting deeper than 512 levels: line 1 column 517")
        objects = b'{"a":' * 513 + b"1" + b"}" * 513
        self.assertInvalid(objects, "Invalid JSON: nesting deeper than 512 levels: line 1 column 2561")
        self.assertInvalid(b"[" * 513 + b"]" * 513, "Invalid JSON: nesting deeper than 512 levels: line 1 column 513")

    def test_very_deep_nesting(self) -> None:
        """When a body nests 100000 levels, it is refused quickly and without RecursionError."""
        for body in [b"[" * 100000 + b"]" * 100000, b'{"a":' * 100000, b'{"a":' + b"[" * 100000]:
            start = time.perf_counter()
            self.assertRaises(InvalidInput, parse_object, body)
            self.assertLess(time.perf_counter() - start, 1.0)

    def test_many_shallow_brackets(self) -> None:
        """When a body has many brackets but shallow nesting, it parses."""
        body = b'{"a":[' + b",".join([b"[]"] * 50000) + b'],"b":"' + b"[" * 1000 + b'"}'
        members = parse_object(body)
        self.assertEqual(len(members["a"].value), 50000)  # type: ignore[arg-type]
        self.assertEqual(members["b"].value, "[" * 1000)

    def test_brackets_in_unterminated_string(self) -> None:
        """When brackets are inside an unterminated string, the string is what is reported."""
        self.assertInvalid(b'{"a":"' + b"[" * 600, "Invalid JSON: Unterminated string starting at: line 1 column 6")

    def test_deep_caller_stack(self) -> None:
        """When the caller is deep in the stack, 512 levels still parse."""
        body = b'{"a":' + b"[" * 511 + b"]" * 511 + b"}"

        def descend(n: int) -> dict[str, Member]:
            return parse_object(body) if n == 0 else descend(n - 1)

        limit = sys.getrecursionlimit()
        depth = 0
        frame: FrameType | None = sys._getframe()
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        self.assertEqual(len(descend(limit - depth - 20)["a"].raw), 1022)
        self.assertEqual(sys.getrecursionlimit(), limit)

    def test_long_integer(self) -> None:
        """When a number has more digits than int() converts, it parses and fails range checks."""
        members = parse_object(b'{"timeout":' + b"9" * 5000 + b', "rate":-' + b"1" * 5000 + b"}")
        self.assertEqual(len(members["timeout"].raw), 5000)
        self.assertRaises(InvalidInput, get_int, members, "timeout", 0, 86400)
        self.assertRaises(InvalidInput, get_number, members, "rate", 0, 1000000)

    @settings(deadline=None)
    @given(st.binary())
    def test_arbitrary_bytes(self, body: bytes) -> None:
        """When the body is any bytes, the only error is InvalidInput."""
        try:
            parse_object(body)
        except InvalidInput:
            pass

    @settings(deadline=None)
    @given(json_fragments)
    def test_arbitrary_json_like_bytes(self, body: bytes) -> None:
        """When the body is made of JSON-like fragments, it parses as json does or InvalidInput."""
        try:
            members = parse_object(body)
        except InvalidInput:
            return
        expected = json.loads(body.decode())
        self.assertEqual({k: m.value for k, m in members.items()}, expected)

    @settings(deadline=None)
    @given(st.dictionaries(st.text(), json_values))
    def test_raw_texts(self, value: dict[str, Any]) -> None:
        """When an object is parsed, each member's raw text reads back as its value."""
        for text in [json.dumps(value), json.dumps(value, indent=2, ensure_ascii=False)]:
            members = parse_object(text.encode())
            self.assertEqual({k: m.value for k, m in members.items()}, value)
            for key, member in members.items():
                self.assertEqual(json.loads(member.raw), value[key])


class FieldTests(SynchronousTestCase):
    def test_int(self) -> None:
        """When an integer field is an integer literal in range, it is returned."""
        members = parse_object(b'{"a":0,"b":1000000,"c":-0,"d":-5}')
        self.assertEqual(get_int(members, "a", 0, 1000000), 0)
        self.assertEqual(get_int(members, "b", 0, 1000000), 1000000)
        self.assertEqual(get_int(members, "c", 0, 10), 0)
        self.assertEqual(get_int(members, "d", -5, 0), -5)

    def test_int_absent_or_null(self) -> None:
        """When an integer field is absent or null, None is returned."""
        members = parse_object(b'{"run_after":null}')
        self.assertIsNone(get_int(members, "run_after", 0, 315360000))
        self.assertIsNone(get_int(members, "timeout", 0, 86400))

    def test_int_refused(self) -> None:
        """When an integer field has a fraction, exponent, other type or is out of range, it is refused."""
        for text in ["1.0", "1e3", "1E3", '"3"', "true", "false", "[1]", "{}", "-1", "86401", "0.5", "-0.0"]:
            members = parse_object(b'{"timeout":' + text.encode() + b"}")
            error = self.assertRaises(InvalidInput, get_int, members, "timeout", 0, 86400)
            self.assertEqual(str(error), "Field 'timeout' must be an integer from 0 to 86400")

    def test_number(self) -> None:
        """When a number field is any JSON number in range, it is returned as a float."""
        members = parse_object(b'{"a":2,"b":0.5,"c":1e3,"d":1000000,"e":0}')
        for name, expected in [("a", 2.0), ("b", 0.5), ("c", 1000.0), ("d", 1000000.0), ("e", 0.0)]:
            value = get_number(members, name, 0, 1000000)
            self.assertEqual(value, expected)
            self.assertIs(type(value), float)

    def test_number_absent_or_null(self) -> None:
        """When a number field is absent or null, None is returned."""
        members = parse_object(b'{"max_dispatches_per_second":null}')
        self.assertIsNone(get_number(members, "max_dispatches_per_second", 0, 1000000))
        self.assertIsNone(get_number(members, "other", 0, 1000000))

    def test_number_refused(self) -> None:
        """When a number field is not a number, not finite or out of range, it is refused."""
        for text in ['"1"', "true", "false", "[1]", "{}", "1e400", "-1e400", "-0.5", "1000000.5", "1" * 400]:
            members = parse_object(b'{"max_dispatches_per_second":' + text.encode() + b"}")
            error = self.assertRaises(InvalidInput, get_number, members, "max_dispatches_per_second", 0, 1000000)
            self.assertEqual(str(error), "Field 'max_dispatches_per_second' must be a number from 0 to 1000000")

    def test_number_bounds_printed(self) -> None:
        """When bounds are floats, integral ones print without fraction, others in shortest form."""
        members = parse_object(b'{"r":-1}')
        error = self.assertRaises(InvalidInput, get_number, members, "r", 0.0, 1e6)
        self.assertEqual(str(error), "Field 'r' must be a number from 0 to 1000000")
        error = self.assertRaises(InvalidInput, get_number, members, "r", 0.5, 2.5)
        self.assertEqual(str(error), "Field 'r' must be a number from 0.5 to 2.5")

    def test_string(self) -> None:
        """When a string field is a string, it is returned; absent or null gives None."""
        members = parse_object(b'{"url":"http://x/","category":null}')
        self.assertEqual(get_string(members, "url"), "http://x/")
        self.assertIsNone(get_string(members, "category"))
        self.assertIsNone(get_string(members, "queue_name"))
        self.assertEqual(get_string(parse_object(b'{"url":""}'), "url"), "")

    def test_string_refused(self) -> None:
        """When a string field is not a string, it is refused."""
        for text in ["1", "true", "[]", '{"a":"b"}', "1.5"]:
            members = parse_object(b'{"url":' + text.encode() + b"}")
            error = self.assertRaises(InvalidInput, get_string, members, "url")
            self.assertEqual(str(error), "Field 'url' must be a string")


def payload_member(body: bytes) -> Member | None:
    return parse_object(body).get("payload")


class PayloadTests(SynchronousTestCase):
    def test_absent(self) -> None:
        """When the payload is absent, it is stored empty, echoed null and re-read as ""."""
        member = payload_member(b'{"url":"http://x/"}')
        self.assertEqual(stored_payload(member), b"")
        self.assertIsNone(payload_echo(member))
        self.assertEqual(encode({"payload": payload_echo(member)}), b'{"payload":null}')
        self.assertEqual(reread_payload(stored_payload(member)), RawJSON('""'))

    def test_null(self) -> None:
        """When the payload is null, it is treated as absent."""
        member = payload_member(b'{"payload":null}')
        self.assertEqual(stored_payload(member), b"")
        self.assertIsNone(payload_echo(member))

    def test_string(self) -> None:
        """When the payload is a string, its characters are stored and the literal is echoed."""
        member = payload_member(b'{"payload":"hello \\"x\\""}')
        self.assertEqual(stored_payload(member), b'hello "x"')
        self.assertEqual(payload_echo(member), RawJSON('"hello \\"x\\""'))
        self.assertEqual(reread_payload(stored_payload(member)), RawJSON('"hello \\"x\\""'))

    def test_string_escapes(self) -> None:
        """When a string payload has escapes, they are unescaped for storage and kept in the echo."""
        member = payload_member('{"payload":"\\u00e9\\n\\/<é>\\ud83d\\ude00"}'.encode())
        self.assertEqual(stored_payload(member), "é\n/<é>\U0001f600".encode())
        self.assertEqual(payload_echo(member), RawJSON('"\\u00e9\\n\\/\\u003cé\\u003e\\ud83d\\ude00"'))

    def test_string_lone_surrogate(self) -> None:
        """When a string payload has an escaped lone surrogate, it is stored as U+FFFD."""
        member = payload_member(b'{"payload":"a\\ud800b\\udfff"}')
        self.assertEqual(stored_payload(member), "a\ufffdb\ufffd".encode())
        self.assertEqual(payload_echo(member), RawJSON('"a\\ud800b\\udfff"'))

    def test_object(self) -> None:
        """When the payload is an object, its text is stored as received and echoed compacted."""
        member = payload_member(b'{"url":"u","payload":{"a": 1.50}}')
        self.assertEqual(stored_payload(member), b'{"a": 1.50}')
        self.assertEqual(payload_echo(member), RawJSON('{"a":1.50}'))
        self.assertEqual(reread_payload(stored_payload(member)), RawJSON('{"a":1.50}'))

    def test_object_kept_byte_for_byte(self) -> None:
        """When the payload has whitespace, odd number spellings, key order and duplicates, all are stored."""
        text = '{ "z" : 1E+2 ,\n\t"a":[ -0 , 0.10 ], "z" : "é\\u0041" }'
        member = payload_member(('{"payload":' + text + "}").encode())
        self.assertEqual(stored_payload(member), text.encode())
        compacted = '{"z":1E+2,"a":[-0,0.10],"z":"é\\u0041"}'
        self.assertEqual(payload_echo(member), RawJSON(compacted))
        self.assertEqual(reread_payload(stored_payload(member)), RawJSON(compacted))

    def test_other_values(self) -> None:
        """When the payload is a number, boolean or array, its text is stored as received."""
        for text, echo in [("123", "123"), ("1.0e-3", "1.0e-3"), ("true", "true"), ("[ 1 , 2 ]", "[1,2]")]:
            member = payload_member(('{"payload":' + text + "}").encode())
            self.assertEqual(stored_payload(member), text.encode())
            self.assertEqual(payload_echo(member), RawJSON(echo))

    def test_pushed_strings_reread(self) -> None:
        """When a pushed string is itself JSON text, re-reading shows that JSON value (docs/api.md,
        Payloads)."""
        cases = [
            (b'{"payload":"plain text"}', '"plain text"'),
            (b'{"payload":"123"}', "123"),
            (b'{"payload":"{\\"a\\":1}"}', '{"a":1}'),
            (b'{"payload":" { \\"a\\" : [1, 2] } "}', '{"a":[1,2]}'),
            (b'{"payload":""}', '""'),
            (b'{"payload":"NaN"}', '"NaN"'),
            (b'{"payload":"1 2"}', '"1 2"'),
            (b'{"payload":"\\"<b>\\""}', '"\\u003cb\\u003e"'),
            (b'{"payload":"<b>"}', '"\\u003cb\\u003e"'),
        ]
        for body, shown in cases:
            self.assertEqual(reread_payload(stored_payload(payload_member(body))), RawJSON(shown))

    def test_reread_whitespace(self) -> None:
        """When stored text is only whitespace, or a value with whitespace around, it is read as such."""
        self.assertEqual(reread_payload(b" \n"), RawJSON('" \\n"'))
        self.assertEqual(reread_payload(b"\t 7 \r\n"), RawJSON("7"))
        self.assertEqual(reread_payload(b"\x0b7"), RawJSON('"\\u000b7"'))

    def test_reread_invalid_utf8(self) -> None:
        """When stored bytes are not UTF-8, each invalid byte becomes U+FFFD, as Go reads them."""
        self.assertEqual(reread_payload(b"a\xffb"), RawJSON('"a\ufffdb"'))
        self.assertEqual(reread_payload(b"\xe2\x82A"), RawJSON('"\ufffd\ufffdA"'))
        self.assertEqual(reread_payload(b'"\xed\xa0\x80"'), RawJSON('"\ufffd\ufffd\ufffd"'))
        self.assertEqual(reread_payload(b'\xed\xa0\x80'), RawJSON('"\ufffd\ufffd\ufffd"'))
        self.assertEqual(reread_payload(b'["\xff"]'), RawJSON('["\ufffd"]'))

    def test_reread_not_strict_json(self) -> None:
        """When stored text is JSON only to a lax parser, it is shown as a string."""
        for stored in [b"NaN", b"[Infinity]", b"-Infinity", b"{'a':1}", b"[1,]", b"\xef\xbb\xbf1"]:
            self.assertEqual(reread_payload(stored), RawJSON(encode_str(stored.decode("utf-8"))))

    def test_reread_deep(self) -> None:
        """When stored text nests deeper than 512 levels, it is shown as a string, quickly."""
        self.assertEqual(reread_payload(b"[" * 512 + b"]" * 512).text, "[" * 512 + "]" * 512)
        deep = b"[" * 513 + b"]" * 513
        self.assertEqual(reread_payload(deep).text, '"' + "[" * 513 + "]" * 513 + '"')
        start = time.perf_counter()
        self.assertEqual(reread_payload(b"[" * 100000).text, '"' + "[" * 100000 + '"')
        self.assertLess(time.perf_counter() - start, 1.0)

    @settings(deadline=None)
    @given(st.binary())
    def test_reread_any_bytes(self, stored: bytes) -> None:
        """When stored bytes are anything, the re-read text is one valid JSON value."""
        json.loads(reread_payload(stored).text)

    @settings(deadline=None)
    @given(json_values)
    def test_round_trip(self, value: Any) -> None:
        """When any payload is pushed, the echo and the re-read are the same JSON value."""
        body = ('{"payload": ' + json.dumps(value, indent=1, ensure_ascii=False) + "}").encode()
        member = payload_member(body)
        stored = stored_payload(member)
        if value is None:
            self.assertEqual(stored, b"")
            return
        echo = payload_echo(member)
        assert echo is not None
        self.assertEqual(json.loads(echo.text), value)
        if not isinstance(value, str):
            self.assertEqual(reread_payload(stored), echo)


class CompactTests(SynchronousTestCase):
    def test_removes_whitespace_outside_strings(self) -> None:
        """When JSON text has whitespace between tokens, it is removed; whitespace in strings stays."""
        self.assertEqual(compact(' { "a b" : [ 1 ,\n\t2 ] , "c" :\r\n"d e" } '), '{"a b":[1,2],"c":"d e"}')

    def test_escapes_html_and_separators(self) -> None:
        """When strings hold <, >, &, U+2028 or U+2029, they are escaped; other characters stay."""
        self.assertEqual(
            compact('["<a href=\'x\'>&</a>", "\u2028\u2029", "é/日本"]'),
            '["\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e","\\u2028\\u2029","é/日本"]',
        )

    def test_keeps_escapes_and_numbers(self) -> None:
        """When the text has escapes and number spellings, they are kept as received."""
        text = '{"a":"\\b\\f\\/\\u0041\\\\ \\"","b":[1.50,1E+2,-0,0.0e0]}'
        self.assertEqual(compact(text), text)

    def test_escaped_quotes_and_backslashes(self) -> None:
        """When strings end in escaped backslashes or hold escaped quotes, string bounds are right."""
        self.assertEqual(compact('[ "a\\\\" , "b\\" , " ]'), '["a\\\\","b\\" , "]')

    def test_unchanged(self) -> None:
        """When nothing needs changing, the text is returned as is."""
        text = '{"a":[1,2,{"b":null}],"c":"d"}'
        self.assertIs(compact(text), text)

    @settings(deadline=None)
    @given(json_values)
    def test_same_value(self, value: Any) -> None:
        """When any JSON text is compacted, it is the same value with nothing left to compact."""
        text = json.dumps(value, indent=2, ensure_ascii=False)
        compacted = compact(text)
        self.assertEqual(json.loads(compacted), value)
        self.assertEqual(compact(compacted), compacted)
        self.assertFalse(set("<>&\u2028\u2029") & set(compacted))


class EncodeStrTests(SynchronousTestCase):
    def test_escaping_table(self) -> None:
        """When a string has special characters, they are escaped exactly as Go does (docs/api.md,
        Responses)."""
        cases = {
            "plain": '"plain"',
            "": '""',
            '"': '"\\""',
            "\\": '"\\\\"',
            "\n\r\t": '"\\n\\r\\t"',
            "\b": '"\\u0008"',
            "\f": '"\\u000c"',
            "\x00\x01\x1f": '"\\u0000\\u0001\\u001f"',
            "\x0b\x1b": '"\\u000b\\u001b"',
            "<a>&": '"\\u003ca\\u003e\\u0026"',
            "\u2028\u2029": '"\\u2028\\u2029"',
            "/": '"/"',
            "\x7f": '"\x7f"',
            "é日本\U0001f600": '"é日本\U0001f600"',
            "\ud800x\udfff": '"\ufffdx\ufffd"',
        }
        for s, literal in cases.items():
            self.assertEqual(encode_str(s), literal)

    @given(st.text())
    def test_reads_back(self, s: str) -> None:
        """When any string is encoded, the literal reads back as the string and has no raw unsafe chars."""
        literal = encode_str(s)
        self.assertEqual(json.loads(literal), s)
        self.assertFalse(any(c < " " or c in "<>&\u2028\u2029" for c in literal))


class Status(str, enum.Enum):
    CLAIMED = "claimed"


class Level(enum.IntEnum):
    HIGH = 3


class EncodeTests(SynchronousTestCase):
    def test_push_response(self) -> None:
        """When the push response of docs/api.md, POST /job is encoded, the bytes are those of the
        example."""
        member = payload_member(b'{"url":"http://worker.internal:8000/send","payload":{"user": 42, "lang": "ja"}}')
        job = {
            "id": 17,
            "queue_name": "mail",
            "category": "send_welcome",
            "url": "http://worker.internal:8000/send",
            "payload": payload_echo(member),
            "run_after": 0,
            "timeout": 10,
            "retry_delay": 30,
            "max_retries": 3,
        }
        self.assertEqual(
            encode(job),
            b'{"id":17,"queue_name":"mail","category":"send_welcome","url":"http://worker.internal:8000/send",'
            b'"payload":{"user":42,"lang":"ja"},"run_after":0,"timeout":10,"retry_delay":30,"max_retries":3}',
        )

    def test_failed_job_message(self) -> None:
        """When a message holds a newline and HTML, it is escaped as in the docs/api.md, GET
        /queue/{q}/failed example."""
        result = {"status": "failure", "code": 502, "message": "Oops\nOriginal response body:\n<html>Bad Gateway</html>"}
        self.assertEqual(
            encode(result),
            b'{"status":"failure","code":502,"message":"Oops\\nOriginal response body:\\n'
            b'\\u003chtml\\u003eBad Gateway\\u003c/html\\u003e"}',
        )

    def test_scalars(self) -> None:
        """When scalars are encoded, they are JSON literals without a trailing newline."""
        cases: list[tuple[object, bytes]] = [
            (None, b"null"), (True, b"true"), (False, b"false"), (0, b"0"), (-7, b"-7"),
            (2**70, b"1180591620717411303424"), ("é", '"é"'.encode()), ("\u2028", b'"\\u2028"'),
        ]
        for value, expected in cases:
            self.assertEqual(encode(value), expected)

    def test_containers(self) -> None:
        """When containers are encoded, members keep insertion order and are compact."""
        value = {"b": [1, (2, 3), [], {}], "a": {"x": None, "y": [True, False]}, "": "e"}
        self.assertEqual(encode(value), b'{"b":[1,[2,3],[],{}],"a":{"x":null,"y":[true,false]},"":"e"}')

    def test_escaped_keys(self) -> None:
        """When keys need escaping, they are escaped like values."""
        self.assertEqual(encode({"<k>\n": 1, "日": 2}), '{"\\u003ck\\u003e\\n":1,"日":2}'.encode())

    def test_raw_json_verbatim(self) -> None:
        """When a RawJSON is encoded, its text is written as is, escapes included."""
        self.assertEqual(encode([RawJSON('"a\\bc"'), RawJSON("1.50")]), b'["a\\bc",1.50]')

    def test_enums(self) -> None:
        """When str or int enums are encoded, their values are written."""
        self.assertEqual(encode({"status": Status.CLAIMED, "level": Level.HIGH}), b'{"status":"claimed","level":3}')

    def test_floats(self) -> None:
        """When floats are encoded, they take Go's shortest form (docs/api.md, Responses)."""
        cases = [
            (2.0, "2"),
            (0.5, "0.5"),
            (0.00005, "0.00005"),
            (1e-7, "1e-07"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e-6, "0.000001"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e16, "10000000000000000"),
            (3600.25, "3600.25"),
            (-1.25e-5, "-0.0000125"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (1e100, "1e+100"),
        ]
        for value, text in cases:
            self.assertEqual(encode(value), text.encode())

    def test_non_finite_floats(self) -> None:
        """When a float is NaN or infinite, encoding fails with ValueError."""
        for value in [float("nan"), float("inf"), float("-inf")]:
            self.assertRaises(ValueError, encode, {"a": value})

    def test_unsupported(self) -> None:
        """When a value or key has no JSON form, encoding fails with TypeError."""
        self.assertRaises(TypeError, encode, {1: "a"})
        self.assertRaises(TypeError, encode, {"a": object()})
        self.assertRaises(TypeError, encode, {"a": b"bytes"})

    @settings(deadline=None)
    @given(json_values)
    def test_reads_back(self, value: Any) -> None:
        """When any JSON-able value is encoded, json.loads reads back an equal value."""
        self.assertTrue(same_json(json.loads(encode(value)), value))
        self.assertTrue(same_json(json.loads(encode_indented(value)), value))

    @settings(deadline=None)
    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_float_shortest(self, value: float) -> None:
        """When any float is encoded, it reads back as the same double, in Go's notation."""
        text = encode(value).decode()
        self.assertEqual(float(text), value)
        magnitude = abs(value)
        if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
            self.assertRegex(text, r"^-?[0-9](\.[0-9]+)?e[-+][0-9]{2,3}$")
        else:
            self.assertRegex(text, r"^-?[0-9]+(\.[0-9]+)?$")
            self.assertFalse(text.endswith(".0"))


class EncodeIndentedTests(SynchronousTestCase):
    def test_stats_layout(self) -> None:
        """When a stats object is indented, members are on their own lines, two spaces a level."""
        value = {"time": 1, "uptime_seconds": 2.5, "gc_counts": [1, 2, 3], "open_fds": None, "e": [], "o": {}}
        self.assertEqual(
            encode_indented(value),
            b'{\n  "time": 1,\n  "uptime_seconds": 2.5,\n  "gc_counts": [\n    1,\n    2,\n    3\n  ],\n'
            b'  "open_fds": null,\n  "e": [],\n  "o": {}\n}',
        )

    def test_scalars_and_raw(self) -> None:
        """When the value is a scalar it is as compact; RawJSON inside is re-indented, as Go does."""
        self.assertEqual(encode_indented(5), b"5")
        self.assertEqual(encode_indented({}), b"{}")
        self.assertEqual(
            encode_indented({"p": RawJSON('{"a":[1,"x, :{"]}')}),
            b'{\n  "p": {\n    "a": [\n      1,\n      "x, :{"\n    ]\n  }\n}',
        )

    @settings(deadline=None)
    @given(json_values)
    def test_as_json_module(self, value: Any) -> None:
        """When any value is indented, the layout is that of json.dumps(indent=2)."""
        expected = json.dumps(value, indent=2, ensure_ascii=False)
        ours = encode_indented(value).decode()
        # Only layout is compared: escapes and float spelling differ by design.
        self.assertEqual(ours.count("\n"), expected.count("\n"))
        self.assertEqual([line[: len(line) - len(line.lstrip())] for line in ours.split("\n")],
                         [line[: len(line) - len(line.lstrip())] for line in expected.split("\n")])
