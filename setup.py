"""apiphant: a small, fast framework for JSON web APIs on gevent."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


#: The template product's files that are not Python modules.
TEMPLATE_DATA = ["*.toml", "*.txt", "*.md", "*.sh", "*.example", ".gitignore", "*.j2", "*.sql"]


def template_packages() -> dict[str, str]:
    """Ship the template product (myproduct/) inside the package as apiphant.template."""
    mapping = {"apiphant.template": "myproduct"}
    for folder in sorted((HERE / "myproduct").rglob("*")):
        if folder.is_dir() and folder.name != "__pycache__":
            relative = folder.relative_to(HERE / "myproduct")
            mapping["apiphant.template." + ".".join(relative.parts)] = str(
                Path("myproduct", relative)
            )
    return mapping


TEMPLATE = template_packages()
#: One home for the version: apiphant/__init__.py (the deploy reads it there too).
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "apiphant" / "__init__.py").read_text())[1]
#: The deploy kit's data stays in the repository's deploy/ folder and ships as a package.
KIT = {"apiphant.deploy_kit": "deploy"}

#: What bench/ measures apiphant against (bench/README.md).
BENCH_PEERS = [
    "flask>=3,<4",
    "gunicorn>=22,<28",
    "falcon>=4,<5",
    "starlette>=1.10,<2",
    "fastapi>=0.165,<1",
    "uvicorn>=0.54,<1",
    "uvloop>=0.23,<1",
    "granian>=2.8,<3",
    "asyncpg>=0.30,<1",  # FastAPI's driver in the database scenarios; tested with 0.32
]

#: What a product's repository uses beside apiphant: fab (deploy, render, rollback) and
#: pytest for its own unit tests (`pytest tests`, which `apiphant new` suggests).
DEPLOY = ["fabric>=3.2,<4", "jinja2>=3.1,<4", "pytest>=8,<10"]

#: PostgreSQL (apiphant.db), tested with psycopg 3.3 and psycopg_pool 3.3: gevent is
#: supported from psycopg 3.1.14, ConnectionPool.check_connection from psycopg_pool 3.2.
POSTGRES = ["psycopg[binary]>=3.3,<4", "psycopg_pool>=3.3,<4"]

#: The docs page's files (/api/docs): Swagger UI 5, which reads OpenAPI 3.1, packaged for
#: Python and kept current; an extra, so the base install stays small (the page says what
#: to install when it is missing). Tested with 5.31.
DOCS = ["swagger-ui-bundle-v2>=5.31,<6"]

setup(
    name="apiphant",
    version=VERSION,
    description="Simple Python Web API framework, based on Gevent, JSON, CRUD.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    # LICENSE ships by setuptools' default (LICEN[CS]E*). No project URL: the repository's
    # public address is not known here; add project_urls when it is published.
    python_requires=">=3.11",
    # Every package under apiphant/ (a new one ships without a line here), the template, the kit.
    packages=[*find_packages(include=["apiphant", "apiphant.*"]), *TEMPLATE, *KIT],
    package_dir={**TEMPLATE, **KIT},
    package_data={
        **{name: TEMPLATE_DATA for name in TEMPLATE},
        "apiphant.deploy_kit": ["templates/*.j2", "roles/*.toml"],
    },
    # Tested ranges, each below its next major version: the server uses gevent's and
    # httptools' public API only, and a new major may still change it.
    install_requires=[
        "gevent>=26.9,<27",
        "httptools>=0.9,<1",
        "requests>=2.28,<3",
        "sentry-sdk>=2.0,<3",
    ],
    extras_require={
        "deploy": DEPLOY,
        "postgres": POSTGRES,
        "docs": DOCS,
        # h11 and orjson: bench.micro; psycopg: the database scenarios (apiphant and Flask).
        "bench": [*BENCH_PEERS, *POSTGRES, "h11>=0.16,<1", "orjson>=3.8,<4"],
        # apiphant's own suite (bash .ci/test); a product needs only the deploy extra.
        "test": [
            *DEPLOY,
            "hypothesis>=6",
            "ruff>=0.5",
            "h11>=0.16,<1",  # the parser's differential tests
            *BENCH_PEERS,  # the bench smoke test runs every peer
            *POSTGRES,  # apiphant.db's tests, against a real PostgreSQL
            *DOCS,  # the docs page in a real browser
            "schemathesis>=4.32,<5",  # a property-based client against the OpenAPI document
            "openapi-spec-validator>=0.7,<1",  # the document is valid OpenAPI 3.1
        ],
    },
    entry_points={
        "console_scripts": [
            "apiphant = apiphant.cli:main",
            "apiphant-background = apiphant.background:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Gevent",
        "Topic :: Internet :: WWW/HTTP :: WSGI :: Application",
    ],
)
