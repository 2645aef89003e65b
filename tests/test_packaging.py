"""The package installs whole and twistd finds its plugin.

Nothing here imports setuptools: new virtual environments (Python 3.12 on) no longer contain
it, and the wheel is built by pip in its own isolated environment, as a user's install is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from email import message_from_bytes
from email.message import Message

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

import fireworq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: pip builds the wheel in an isolated environment it fills from the package index.
BUILD_TIMEOUT = 300


def _modules_in_tree() -> set[str]:
    found = set()
    for directory, _, files in os.walk(os.path.join(ROOT, "fireworq")):
        if "__pycache__" in directory:
            continue
        relative = os.path.relpath(directory, ROOT)
        # The console's static files are package data (docs/console.md).
        static = relative.replace(os.sep, "/") == "fireworq/console/static"
        found.update(
            os.path.join(relative, name).replace(os.sep, "/")
            for name in files if name.endswith(".py") or name == "py.typed" or static
        )
    return found


class WheelTests(SynchronousTestCase):
    """What `pip install .` installs: the wheel pip builds from the checkout."""

    wheel: str
    output: str
    names: set[str]

    @classmethod
    def setUpClass(cls) -> None:
        cls._directory = tempfile.TemporaryDirectory(prefix="fireworq-wheel-")
        target = cls._directory.name
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", target,
             ROOT],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
        )
        cls.output = built.stdout + built.stderr
        if built.returncode != 0:
            raise AssertionError("pip wheel failed:\n" + cls.output)
        [name] = [n for n in os.listdir(target) if n.endswith(".whl")]
        cls.wheel = os.path.join(target, name)
        with zipfile.ZipFile(cls.wheel) as wheel:
            cls.names = set(wheel.namelist())

    @classmethod
    def tearDownClass(cls) -> None:
        cls._directory.cleanup()

    def _metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as wheel:
            [path] = [n for n in self.names if n.endswith(".dist-info/METADATA")]
            return message_from_bytes(wheel.read(path))

    def test_everyModuleInstalled(self) -> None:
        """When the wheel is built, it holds every module of the package, its type marker, the
        console's files and the twistd plugin, and neither the tests nor a twisted/__init__.py."""
        self.assertIn("fireworq/console/static/index.html", _modules_in_tree())
        self.assertLessEqual(_modules_in_tree(), self.names)
        self.assertIn("twisted/plugins/fireworq_plugin.py", self.names)
        self.assertFalse({"twisted/__init__.py", "twisted/plugins/__init__.py"} & self.names)
        self.assertFalse([n for n in self.names if n.startswith(("tests/", "bench/"))])

    def test_noLegacyWarnings(self) -> None:
        """When pip builds the package, it warns about nothing (no legacy setup.py install)."""
        lines = self.output.lower().splitlines()
        self.assertEqual([line for line in lines if "deprecat" in line], [])
        self.assertEqual([line for line in lines if "warning" in line and "is ignored" not in line],
                         [])

    def test_metadata(self) -> None:
        """When the wheel is built, its metadata names the version, the licence (with its text),
        the supported Pythons and the command."""
        metadata = self._metadata()
        self.assertEqual(metadata["Version"], fireworq.__version__)
        self.assertEqual(metadata["License-Expression"], "Apache-2.0")
        self.assertEqual(metadata["Requires-Python"], ">=3.11")
        classifiers = metadata.get_all("Classifier") or []
        for version in ("3.11", "3.12", "3.13"):
            self.assertIn(f"Programming Language :: Python :: {version}", classifiers)
        self.assertTrue([n for n in self.names if n.endswith(".dist-info/licenses/LICENSE")])
        self.assertTrue(metadata.get_all("Project-URL"))

    def test_pluginFoundWhenInstalled(self) -> None:
        """When the wheel is installed (not editable), twistd finds the plugin there."""
        with tempfile.TemporaryDirectory(prefix="fireworq-site-") as site:
            with zipfile.ZipFile(self.wheel) as wheel:
                wheel.extractall(site)
            probe = (
                "import sys; from twisted.plugin import getPlugins;"
                " from twisted.application.service import IServiceMaker;"
                " makers = {m.tapname: m for m in getPlugins(IServiceMaker)};"
                " print(makers['fireworq'].options.__module__,"
                " sys.modules['fireworq'].__file__)"
            )
            env = dict(os.environ, PYTHONPATH=site)
            found = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                cwd=site, timeout=60, check=False,
            )
        self.assertEqual(found.returncode, 0, found.stderr)
        module, path = found.stdout.split()
        self.assertEqual(module, "fireworq.config")
        self.assertTrue(path.startswith(site), path)


class CheckoutTests(SynchronousTestCase):
    def test_pluginFound(self) -> None:
        """When twistd looks for service makers, fireworq is one of them."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("fireworq", makers)
        self.assertEqual(makers["fireworq"].options.__module__, "fireworq.config")

    def test_noInitInTwistedPlugins(self) -> None:
        """When installed, twisted/plugins must not shadow Twisted's own package files."""
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "plugins", "__init__.py")))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


class DockerfileTests(SynchronousTestCase):
    """The image's recipe, read (no container engine is needed to run the suite)."""

    def test_basePinned(self) -> None:
        """When the image is built, its base is a Python release, not a moving tag."""
        [base] = [args for name, args in dockerfile_instructions() if name == "FROM"]
        self.assertRegex(base, r"^python:3\.1[1-3]\.[0-9]+-slim-[a-z]+$")

    def test_labels(self) -> None:
        """When the image is inspected, its OCI labels name it, its version and licence."""
        labels = " ".join(args for name, args in dockerfile_instructions() if name == "LABEL")
        for key in ("title", "description", "version", "licenses"):
            self.assertIn(f"org.opencontainers.image.{key}=", labels)
        self.assertIn('org.opencontainers.image.licenses="Apache-2.0"', labels)
        [version] = [args for name, args in dockerfile_instructions()
                     if name == "ARG" and args.startswith("VERSION=")]
        self.assertEqual(version, f"VERSION={fireworq.__version__}")

    def test_healthcheck(self) -> None:
        """When the container runs, its health is /healthz (which answers while the database
        is away), on the port of FIREWORQ_BIND."""
        [check] = [args for name, args in dockerfile_instructions() if name == "HEALTHCHECK"]
        self.assertIn("/healthz", check)
        self.assertIn("FIREWORQ_BIND", check)

    def test_copiesWhatTheBuildNeeds(self) -> None:
        """When the image is built, pip finds the project's metadata and licence."""
        copied = " ".join(args for name, args in dockerfile_instructions() if name == "COPY")
        for path in ("pyproject.toml", "LICENSE", "README.md", "fireworq", "twisted"):
            self.assertIn(path, copied.split())
