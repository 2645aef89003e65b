"""The package installs whole and twistd finds its plugin."""

from __future__ import annotations

import os

from setuptools import find_packages
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PackagingTests(SynchronousTestCase):
    def test_everyModuleIsInAPackage(self) -> None:
        """When setup.py lists the packages, every directory with modules is among them
        (a regular install, unlike an editable one, leaves the others out)."""
        found = set(find_packages(ROOT, include=["fireworq", "fireworq.*"]))
        for directory, _, files in os.walk(os.path.join(ROOT, "fireworq")):
            if "__pycache__" in directory or not any(f.endswith(".py") for f in files):
                continue
            package = os.path.relpath(directory, ROOT).replace(os.sep, ".")
            self.assertIn(package, found)

    def test_pluginFound(self) -> None:
        """When twistd looks for service makers, fireworq is one of them."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("fireworq", makers)
        self.assertEqual(makers["fireworq"].options.__module__, "fireworq.config")

    def test_noInitInTwistedPlugins(self) -> None:
        """When installed, twisted/plugins must not shadow Twisted's own package files."""
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "plugins", "__init__.py")))
