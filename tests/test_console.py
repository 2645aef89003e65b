"""The console's files at ``/console/`` (docs/console.md, Security): the files of the
package and nothing else, with a strict Content-Security-Policy, GET and HEAD only.

Every request goes through the real site (L{apptools.ApiHarness.request}), raw paths included.
"""

from __future__ import annotations

import re
from importlib import resources

from test_api import APITestCase

from fireworq.api.console import CONTENT_SECURITY_POLICY, load_files

STATIC = resources.files("fireworq.console").joinpath("static")
SERVED = sorted(entry.name for entry in STATIC.iterdir()
                if entry.is_file() and not entry.name.endswith((".md", ".txt")))


class ConsoleFilesTests(APITestCase):
    def test_index(self) -> None:
        for target in ("/console/", "/console/index.html"):
            response = self.node.get(target)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.header(b"content-type"), b"text/html; charset=utf-8")
            self.assertEqual(response.body, STATIC.joinpath("index.html").read_bytes())
            self.assertEqual(response.header(b"content-security-policy"),
                             CONTENT_SECURITY_POLICY)
            self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")
            self.assertEqual(response.header(b"cache-control"), b"no-cache")

    def test_everyFileWithItsType(self) -> None:
        types = {"html": b"text/html; charset=utf-8", "js": b"text/javascript; charset=utf-8",
                 "css": b"text/css; charset=utf-8"}
        self.assertIn("app.js", SERVED)
        for name in SERVED:
            response = self.node.get("/console/" + name)
            self.assertEqual(response.status, 200, name)
            self.assertEqual(response.body, STATIC.joinpath(name).read_bytes())
            self.assertEqual(response.header(b"content-type"), types[name.rsplit(".", 1)[1]])
            self.assertEqual(response.header(b"content-length"), b"%d" % len(response.body))

    def test_policyForbidsInlineCode(self) -> None:
        policy = CONTENT_SECURITY_POLICY.decode()
        self.assertIn("default-src 'self'", policy)
        self.assertNotIn("unsafe", policy)
        # And the pages need none: no inline script, style or handler in the HTML.
        html = STATIC.joinpath("index.html").read_text("utf-8")
        self.assertEqual(re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html), [])
        self.assertNotIn("<style", html)
        self.assertIsNone(re.search(r"\s(style|on\w+)=", html))

    def test_redirectToTheSlash(self) -> None:
        response = self.node.get("/console")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), b"/console/")

    def test_revalidation(self) -> None:
        first = self.node.get("/console/app.js")
        etag = first.header(b"etag")
        assert etag is not None
        again = self.node.get("/console/app.js", headers=[(b"If-None-Match", etag)])
        self.assertEqual(again.status, 304)
        self.assertEqual(again.body, b"")
        listed = self.node.get("/console/app.js",
                               headers=[(b"If-None-Match", b'"other", W/' + etag)])
        self.assertEqual(listed.status, 304)
        other = self.node.get("/console/app.js", headers=[(b"If-None-Match", b'"other"')])
        self.assertEqual(other.status, 200)
        # Each file has its own tag.
        self.assertNotEqual(self.node.get("/console/api.js").header(b"etag"), etag)

    def test_head(self) -> None:
        response = self.node.request("HEAD", "/console/app.js")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.header(b"content-length"),
                         b"%d" % len(STATIC.joinpath("app.js").read_bytes()))

    def test_otherMethods(self) -> None:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            for target in ("/console/", "/console/app.js", "/console/nope"):
                response = self.node.request(method, target)
                self.assertError(
                    response, 405,
                    "Method %s is not allowed on %s; allowed: GET, HEAD" % (method, target))
                self.assertEqual(response.header(b"allow"), b"GET, HEAD")

    def test_noOtherFile(self) -> None:
        for target in ("/console/nope.js", "/console/static/app.js", "/console/static/",
                       "/console/__init__.py", "/console/sub/", "/console/app.js/",
                       "/console/APP.JS", "/consolex", "/console/app.js%00"):
            response = self.node.get(target)
            self.assertEqual(response.status, 404, target)
            self.assertEqual(response.header(b"content-type"), b"application/json", target)

    def test_noPathTraversal(self) -> None:
        secret = b"fireworq.api"  # text of the package's Python files
        for target in (
            "/console/../api/app.py", "/console/%2e%2e/__init__.py", "/console/..%2f__init__.py",
            "/console/%2e%2e%2f%2e%2e%2fpyproject.toml", "/console/..%5c__init__.py",
            "/console/%252e%252e/__init__.py", "/console//etc/passwd", "/console/%2fetc%2fpasswd",
            "/console/./app.js", "/console/.%2fapp.js", "/console/%c0%ae%c0%ae/__init__.py",
        ):
            response = self.node.get(target)
            self.assertIn(response.status, (400, 404), target)
            self.assertNotIn(secret, response.body)
            self.assertNotIn(b"root:", response.body)

    def test_licencesAreNotServed(self) -> None:
        # Notes shipped beside the files (licences, versions) are for readers, not served.
        self.assertTrue(set(load_files()) <= set(SERVED))
        self.assertEqual(set(load_files()), set(SERVED))
