"""Reading a worker's answer (docs/worker-protocol.md, The answer, rows 4 to 6, and what a result
object is)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from fireworq.delivery import interpret_response
from fireworq.delivery.result import ECHO_LIMIT, body_echo
from fireworq.model import WorkerResult

_PARSE = "Cannot parse body as JSON: "
_INVALID = "Invalid result status: "
_ORIGINAL = "\nOriginal response body:\n"


class ResultObjectTests(SynchronousTestCase):
    def assert_not_result_object(self, body: bytes, code: int = 200) -> WorkerResult:
        result = interpret_response(code, body)
        self.assertEqual(result.status, "failure")
        self.assertEqual(result.code, code)
        self.assertTrue(result.message.startswith(_PARSE), result.message)
        self.assertTrue(result.message.endswith(_ORIGINAL + body_echo(body)), result.message)
        reason = result.message[len(_PARSE) : -len(_ORIGINAL + body_echo(body))]
        self.assertTrue(reason, "the reason part is empty")
        return result

    def assert_invalid_status(self, body: bytes, shown: str) -> None:
        result = interpret_response(200, body)
        expected = _INVALID + shown + _ORIGINAL + body.decode("utf-8", "replace")
        self.assertEqual(result, WorkerResult("failure", 200, expected))

    def test_success(self) -> None:
        """When the body is a result object with a final status, that status and message count."""
        body = b'{"status":"success","message":"done"}'
        self.assertEqual(interpret_response(200, body), WorkerResult("success", 200, "done"))
        body = b'{"status":"permanent-failure","message":"no"}'
        self.assertEqual(
            interpret_response(200, body), WorkerResult("permanent-failure", 200, "no")
        )
        body = b'{"status":"failure"}'
        self.assertEqual(interpret_response(200, body), WorkerResult("failure", 200, ""))

    def test_http_status_never_decides(self) -> None:
        """When the answer is a 500 with a success body, it is a success recorded with code 500;
        a 200 that is not a result object is a failure."""
        self.assertEqual(
            interpret_response(500, b'{"status":"success"}'), WorkerResult("success", 500, "")
        )
        self.assert_not_result_object(b"OK", code=200)

    def test_worker_code_discarded(self) -> None:
        """When the worker sends its own code, the HTTP status is recorded instead."""
        self.assertEqual(
            interpret_response(201, b'{"status":"success","code":42,"message":"m"}'),
            WorkerResult("success", 201, "m"),
        )

    def test_not_json(self) -> None:
        for body in [
            b"not json",
            b"{",
            b'{"status":"success"',
            b"{'status':'success'}",
            b"\xef\xbb\xbf{}",
        ]:
            self.assert_not_result_object(body)

    def test_syntax_error_reason(self) -> None:
        """When the body is malformed JSON, the reason reads the same on every Python version
        (CPython 3.13 words a trailing comma differently)."""
        for body, reason in [
            (b'{"status":"success",}', "Expecting property name enclosed in double quotes:"
                                        " line 1 column 21 (char 20)"),
            (b"[1,]", "Expecting value: line 1 column 4 (char 3)"),
            (b"<html>", "Expecting value: line 1 column 1 (char 0)"),
        ]:
            result = self.assert_not_result_object(body)
            self.assertEqual(result.message, _PARSE + reason + _ORIGINAL + body.decode())

    def test_empty_body(self) -> None:
        for body in [b"", b" \r\n\t"]:
            result = self.assert_not_result_object(body)
            self.assertEqual(
                result.message, _PARSE + "unexpected end of JSON input" + _ORIGINAL + body.decode()
            )

    def test_null(self) -> None:
        """When the body is null, it is an object without members: the status is missing."""
        self.assert_invalid_status(b"null", "")
        self.assert_invalid_status(b" null \n", "")

    def test_other_values(self) -> None:
        for body in [
            b"[]",
            b'[{"status":"success"}]',
            b'"success"',
            b"1",
            b"-0.5e3",
            b"true",
            b"false",
        ]:
            self.assert_not_result_object(body)

    def test_whitespace_around(self) -> None:
        body = b' \t\r\n{"status":"success"} \t\r\n'
        self.assertEqual(interpret_response(200, body).status, "success")

    def test_non_json_whitespace(self) -> None:
        """When the value is surrounded by whitespace JSON does not know, it is not JSON."""
        for body in [
            b'\x0c{"status":"success"}',
            b'{"status":"success"}\xc2\xa0',
            b'\x00{"status":"success"}',
        ]:
            self.assert_not_result_object(body)

    def test_trailing_data(self) -> None:
        for body in [
            b'{"status":"success"}x',
            b'{"status":"success"}{}',
            b'{"status":"success"} null',
        ]:
            self.assert_not_result_object(body)

    def test_non_finite_numbers(self) -> None:
        for literal in [b"NaN", b"Infinity", b"-Infinity"]:
            self.assert_not_result_object(b'{"status":"success","x":' + literal + b"}")
            self.assert_not_result_object(b'{"status":"success","code":' + literal + b"}")
            self.assert_not_result_object(literal)

    def test_names_ignore_ascii_case(self) -> None:
        self.assertEqual(interpret_response(200, b'{"Status":"success"}').status, "success")
        self.assertEqual(
            interpret_response(200, b'{"STATUS":"failure","MeSsAgE":"m"}'),
            WorkerResult("failure", 200, "m"),
        )
        self.assert_invalid_status(b'{"STATUS":"ok"}', "ok")

    def test_names_do_not_fold_unicode(self) -> None:
        """When a name matches only by Unicode case folding (the long s), it is
        another member."""
        self.assert_invalid_status('{"ſtatus":"success"}'.encode(), "")
        self.assertEqual(
            interpret_response(200, '{"status":"success","meſſage":"x"}'.encode()),
            WorkerResult("success", 200, ""),
        )

    def test_last_member_counts(self) -> None:
        body = b'{"status":"failure","STATUS":"success","message":"a","Message":"b"}'
        self.assertEqual(interpret_response(200, body), WorkerResult("success", 200, "b"))
        self.assert_invalid_status(b'{"status":"success","status":"ok"}', "ok")

    def test_null_member_does_not_undo(self) -> None:
        """When a later member is null, the earlier value stays (as Go's decoder reads it)."""
        body = b'{"status":"success","message":"m","status":null,"message":null}'
        self.assertEqual(interpret_response(200, body), WorkerResult("success", 200, "m"))

    def test_status_must_be_string_or_null(self) -> None:
        for value in [b"1", b"true", b"[]", b'{"a":1}', b'["success"]']:
            self.assert_not_result_object(b'{"status":' + value + b"}")
        # every matching member must be well-typed, not only the last
        self.assert_not_result_object(b'{"status":1,"status":"success"}')
        self.assert_invalid_status(b'{"status":null}', "")

    def test_message_must_be_string_or_null(self) -> None:
        for value in [b"1", b"false", b"[]", b"{}"]:
            self.assert_not_result_object(b'{"status":"success","message":' + value + b"}")
        self.assertEqual(
            interpret_response(200, b'{"status":"success","message":null}'),
            WorkerResult("success", 200, ""),
        )

    def test_code_must_be_int64_literal_or_null(self) -> None:
        for value in [b"1.5", b"1e3", b"1E3", b"1.0", b'"1"', b"true", b"[]", b"{}", b"-1e0"]:
            self.assert_not_result_object(b'{"status":"success","code":' + value + b"}")
        for value in [str(2**63).encode(), str(-(2**63) - 1).encode(), b"1" * 30, b"9" * 5000]:
            self.assert_not_result_object(b'{"status":"success","code":' + value + b"}")
        for value in [str(2**63 - 1).encode(), str(-(2**63)).encode(), b"0", b"-0", b"null"]:
            body = b'{"status":"success","code":' + value + b"}"
            self.assertEqual(interpret_response(200, body), WorkerResult("success", 200, ""))

    def test_other_members_ignored(self) -> None:
        body = (
            b'{"status":"success","x":1e999,"y":'
            + b"9" * 5000
            + b',"z":[1.5,{"code":"x"}],"codes":1.5}'
        )
        self.assertEqual(interpret_response(200, body), WorkerResult("success", 200, ""))

    def test_nested_names_do_not_count(self) -> None:
        self.assert_invalid_status(b'{"x":{"status":"success"}}', "")

    def test_invalid_statuses(self) -> None:
        for status in ["", "ok", "SUCCESS", "Success", "internal-failure", " success"]:
            body = b'{"status":"' + status.encode() + b'"}'
            self.assert_invalid_status(body, status)
        self.assert_invalid_status(b'{"message":"m"}', "")

    def test_deep_nesting(self) -> None:
        """When a body nests deeper than the parser can go, it is not a result object, and
        nothing is raised."""
        self.assert_not_result_object(b"[" * 100_000)
        self.assert_not_result_object(
            b'{"status":"success","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        )

    def test_lone_surrogate_escapes(self) -> None:
        """When a string escapes half a surrogate pair, it is read as U+FFFD, as in Go."""
        body = b'{"status":"success","message":"a\\ud800b\\ud83d\\ude00"}'
        self.assertEqual(
            interpret_response(200, body), WorkerResult("success", 200, "a\ufffdb\U0001f600")
        )
        self.assert_invalid_status(b'{"status":"\\udc00"}', "\ufffd")

    def test_invalid_utf8_in_strings(self) -> None:
        """When a string holds bytes that are not UTF-8, they read as U+FFFD (Go's reading)."""
        body = b'{"status":"success","message":"x\xffy"}'
        self.assertEqual(interpret_response(200, body), WorkerResult("success", 200, "x\ufffdy"))


class BodyEchoTests(SynchronousTestCase):
    def test_short_body_whole(self) -> None:
        self.assertEqual(body_echo(b"plain"), "plain")
        result = interpret_response(502, b"<html>Bad gateway</html>")
        self.assertTrue(result.message.endswith(_ORIGINAL + "<html>Bad gateway</html>"))

    def test_cut_at_limit(self) -> None:
        body = b"a" * (ECHO_LIMIT + 100)
        self.assertEqual(body_echo(body), "a" * ECHO_LIMIT)
        self.assertTrue(
            interpret_response(200, body).message.endswith(_ORIGINAL + "a" * ECHO_LIMIT)
        )

    def test_cut_at_character_boundary(self) -> None:
        """When the limit falls inside a multibyte character, the character is left out whole."""
        body = b"a" + "é".encode() * 3000  # 1 + 2 * 2047 = 4095 bytes fit, the next é does not
        self.assertEqual(body_echo(body), "a" + "é" * 2047)
        body = "€".encode() * 2000  # 3 bytes each: 1365 fit in 4095
        self.assertEqual(body_echo(body), "€" * 1365)
        body = "😀".encode() * 1025  # 4 bytes each: exactly 1024 fit
        self.assertEqual(body_echo(body), "😀" * 1024)

    def test_invalid_utf8_replaced(self) -> None:
        self.assertEqual(body_echo(b"a\xffb\xc3"), "a\ufffdb\ufffd")
        result = interpret_response(200, b"\xfe\xff")
        self.assertTrue(result.message.endswith(_ORIGINAL + "\ufffd\ufffd"))

    def test_replacements_count_as_utf8(self) -> None:
        """When invalid bytes are replaced, the cut counts the 3 bytes of each U+FFFD."""
        echo = body_echo(b"\xff" * 5000)
        self.assertEqual(echo, "\ufffd" * (ECHO_LIMIT // 3))
        self.assertLessEqual(len(echo.encode()), ECHO_LIMIT)

    @given(st.binary(max_size=6000))
    @settings(max_examples=300)
    def test_echo_is_a_utf8_prefix(self, body: bytes) -> None:
        echo = body_echo(body)
        encoded = echo.encode("utf-8")
        full = body.decode("utf-8", "replace").encode("utf-8")
        self.assertLessEqual(len(encoded), ECHO_LIMIT)
        self.assertTrue(full.startswith(encoded))
        self.assertGreater(len(encoded), min(len(full), ECHO_LIMIT) - 4)


class NeverRaisesTests(SynchronousTestCase):
    @given(st.binary(max_size=300), st.integers(min_value=100, max_value=599))
    @settings(max_examples=500)
    def test_arbitrary_bytes(self, body: bytes, code: int) -> None:
        result = interpret_response(code, body)
        self.assertEqual(result.code, code)
        self.assertIn(result.status, {"success", "failure", "permanent-failure"})
        result.message.encode("utf-8")  # storable

    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(),
            lambda children: (
                st.lists(children)
                | st.dictionaries(st.sampled_from(["status", "Message", "code", "x"]), children)
            ),
            max_leaves=20,
        )
    )
    @settings(max_examples=300)
    def test_arbitrary_json(self, value: object) -> None:
        import json

        body = json.dumps(value).encode()
        result = interpret_response(200, body)
        if isinstance(value, dict) and value.get("status") in (
            "success",
            "failure",
            "permanent-failure",
        ):
            message = value.get("Message")
            if (message is None or isinstance(message, str)) and (
                value.get("code") is None
                or (type(value.get("code")) is int and -(2**63) <= value["code"] < 2**63)
            ):
                self.assertEqual(result.status, value["status"])
        result.message.encode("utf-8")
