from setuptools import find_packages, setup

setup(
    name="fireworq-py",
    version="0.1.0",
    description="A language-agnostic HTTP job queue daemon, compatible with Fireworq 1.5",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # twisted/plugins has no __init__.py (it must not shadow Twisted's own);
    # package_dir keeps the plugin visible to twistd after `pip install -e .`.
    package_dir={"": "."},
    packages=find_packages(include=["fireworq", "fireworq.*"]) + ["twisted.plugins"],
    package_data={"fireworq": ["py.typed"]},
    install_requires=[
        "Twisted[tls]>=24.7",
        "klein>=24.8",
        "treq>=24.9",
        "attrs>=23.1",
        "prometheus-client>=0.20",
        "PyMySQL>=1.1",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-twisted>=1.14", "hypothesis>=6.100"],
        "dev": ["mypy>=1.10", "mypy-zope>=1.0", "tox>=4"],
    },
    entry_points={"console_scripts": ["fireworq = fireworq.cli:main"]},
)
