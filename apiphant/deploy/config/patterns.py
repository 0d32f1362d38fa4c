"""The strict patterns every name, address and path of deploy.toml is checked against, so the
layers above (shell commands, file paths, rendered files) can rely on them."""

import re

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
SSH = re.compile(
    r"(?:(?P<user>[a-z_][a-z0-9_-]{0,31})@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
SERVER_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*")
POOL = re.compile(r"[a-z][a-z0-9_]{0,30}")
TARGET = re.compile(r"v[0-9]+(/[A-Za-z_][A-Za-z0-9_]*)*")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ABS_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")
RATE = re.compile(r"[1-9][0-9]{0,5}r/[sm]")
ANY_TEXT = re.compile(r"[^,\s]{1,200}")  # each checked by apiphant.cors.policy
ENV_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")
LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: A name a certificate can be issued for: letters, digits and hyphens in labels, at least two
#: labels, a top-level label that is not a number (no IP address, no wildcard: HTTP-01).
DOMAIN = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
ACME_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?")
