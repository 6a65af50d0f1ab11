"""Blob URLs: parsing into account / container / name, and the allow-list policy that guards them.

The worker's identity can read every container it has a role on, so a job must never be able to point
it at an arbitrary URL. A URL passes only when it is `https://<account>.blob.<suffix>/<container>/<name>`
(or a configured loopback dev endpoint, path-style) whose account/container is allow-listed. Everything
else — userinfo, ports, IP literals, look-alike hosts, traversal, queries carrying SAS tokens — is
`InputForbidden` with a detail that says which rule failed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from worker.errors import InputForbidden

__all__ = ["ANY_CONTAINER", "LOCAL_FILES", "BlobPolicy", "BlobRef", "DevEndpoint", "parse_allow_list"]

#: Public-cloud blob endpoint suffixes. A host must be exactly `<account>.<suffix>`.
BLOB_SUFFIXES = (
    "blob.core.windows.net",
    "blob.core.chinacloudapi.cn",
    "blob.core.usgovcloudapi.net",
)
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$|^\$root$")
_MAX_BLOB_NAME = 1024
_FORBIDDEN_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")

#: `account_url` of refs to local files (`voicelive-worker process FILE`); only LocalInput opens them.
LOCAL_FILES = "file://"

#: Allow-list that admits every account and container. Only code builds it (for offline `validate`);
#: `parse_allow_list` refuses a `*` account, so no setting can produce it.
ANY_CONTAINER: frozenset[tuple[str, str]] = frozenset({("*", "*")})


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A resolved blob (or, for outputs, a prefix ending in `/`) inside one account and container."""

    account_url: str  # https://acct.blob.core.windows.net  or  http://127.0.0.1:10000/devstoreaccount1
    account: str
    container: str
    name: str

    @property
    def url(self) -> str:
        if self.account_url == LOCAL_FILES:  # `process FILE`: the name is a local path
            return f"file://{quote(self.name, safe='/')}"
        return f"{self.account_url}/{self.container}/{quote(self.name, safe='/')}"

    def child(self, relative: str) -> BlobRef:
        """The blob `relative` under this prefix (outputs)."""
        prefix = self.name if not self.name or self.name.endswith("/") else self.name + "/"
        return BlobRef(self.account_url, self.account, self.container, prefix + relative)


@dataclass(frozen=True, slots=True)
class DevEndpoint:
    """A loopback, path-style endpoint (Azurite): `http://127.0.0.1:PORT/<account>`."""

    scheme: str
    host: str
    port: int | None
    account: str

    @classmethod
    def from_url(cls, url: str) -> DevEndpoint:
        parts = urlsplit(url.rstrip("/"))
        account = parts.path.strip("/")
        if not parts.hostname or not account or "/" in account:
            raise ValueError(f"dev blob endpoint must look like http://127.0.0.1:10000/<account>: {url!r}")
        return cls(parts.scheme.lower(), parts.hostname.lower(), parts.port, account)

    @property
    def base(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}/{self.account}"


def parse_allow_list(value: str) -> frozenset[tuple[str, str]]:
    """`acct/container,acct2/*` → {(acct, container), (acct2, *)}; raises ValueError on a bad entry."""
    entries: set[tuple[str, str]] = set()
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        account, sep, container = item.partition("/")
        if not sep or not account or not container or "/" in container or account == "*":
            raise ValueError(f"allow-list entry {item!r} must be 'account/container' or 'account/*'")
        entries.add((account.lower(), container if container == "*" else container.lower()))
    return frozenset(entries)


@dataclass(frozen=True, slots=True)
class BlobPolicy:
    """Which blobs a job may read and where it may write.

    Args:
        allowed_inputs: (account, container) pairs; container `*` allows every container of the account.
        allowed_outputs: the same for output prefixes; the default output container is always allowed.
        results: (account_url, account, container) where `<job_id>/` goes when a job names no output.
        dev_endpoints: loopback endpoints accepted over http, with a port, path-style (Azurite).
    """

    allowed_inputs: frozenset[tuple[str, str]]
    results: tuple[str, str, str]
    allowed_outputs: frozenset[tuple[str, str]] = frozenset()
    dev_endpoints: tuple[DevEndpoint, ...] = field(default=())

    def check_input(self, url: str) -> BlobRef:
        ref = self._parse(url, what="input.url")
        if not ref.name or ref.name.endswith("/"):
            raise InputForbidden(f"input.url names no blob: {_show(url)}")
        self._require_allowed(ref, self.allowed_inputs, what="input.url")
        return ref

    def check_output(self, url: str) -> BlobRef:
        ref = self._parse(url, what="output.url")
        allowed = self.allowed_outputs | {(self.results[1], self.results[2])}
        self._require_allowed(ref, allowed, what="output.url")
        if ref.name and not ref.name.endswith("/"):
            ref = BlobRef(ref.account_url, ref.account, ref.container, ref.name + "/")
        return ref

    def default_output(self, job_id: str) -> BlobRef:
        account_url, account, container = self.results
        return BlobRef(account_url, account, container, f"{job_id}/")

    # -- internals ---------------------------------------------------------------------------------

    def _require_allowed(self, ref: BlobRef, allowed: frozenset[tuple[str, str]], *, what: str) -> None:
        if {(ref.account, ref.container), (ref.account, "*"), ("*", "*")} & allowed:
            return
        raise InputForbidden(f"{what} container {ref.account}/{ref.container} is not allow-listed")

    def _parse(self, url: str, *, what: str) -> BlobRef:
        if not url.isascii() or any(c.isspace() for c in url):
            raise InputForbidden(f"{what} must be a plain ASCII URL without spaces: {_show(url)}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InputForbidden(f"{what} is not a valid URL ({exc}): {_show(url)}") from None
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise InputForbidden(f"{what} must not carry user info: {_show(url)}")
        if parts.query or parts.fragment:
            raise InputForbidden(f"{what} must not carry a query or fragment (no SAS tokens): {_show(url)}")
        host = (parts.hostname or "").lower()
        dev = self._dev_endpoint(parts.scheme.lower(), host, port, parts.path)
        if dev is not None:
            account_url, account = dev.base, dev.account
            path = parts.path[len(dev.account) + 1 :]
        else:
            account = self._public_account(parts.scheme.lower(), host, port, what=what, url=url)
            account_url, path = f"https://{account}.{host.split('.', 1)[1]}", parts.path
        container, name = _split_path(path, what=what, url=url)
        return BlobRef(account_url, account, container, name)

    def _dev_endpoint(self, scheme: str, host: str, port: int | None, path: str) -> DevEndpoint | None:
        for dev in self.dev_endpoints:
            if (scheme, host, port) == (dev.scheme, dev.host, dev.port) and path.startswith(
                f"/{dev.account}/"
            ):
                return dev
        return None

    def _public_account(self, scheme: str, host: str, port: int | None, *, what: str, url: str) -> str:
        if scheme != "https":
            raise InputForbidden(f"{what} must use https: {_show(url)}")
        if port is not None:
            raise InputForbidden(f"{what} must not name a port: {_show(url)}")
        if _is_ip(host):
            raise InputForbidden(f"{what} must not be an IP address: {_show(url)}")
        account, _, suffix = host.partition(".")
        if suffix not in BLOB_SUFFIXES or not _ACCOUNT.match(account):
            raise InputForbidden(f"{what} host {host!r} is not an Azure Blob Storage account endpoint")
        return account


def _split_path(path: str, *, what: str, url: str) -> tuple[str, str]:
    """`/container/a/b.wav` → (container, 'a/b.wav'), rejecting traversal in raw or encoded form."""
    if "%2f" in path.lower() or "%5c" in path.lower():
        raise InputForbidden(f"{what} must not contain encoded slashes: {_show(url)}")
    decoded = unquote(path)
    if "%" in decoded and unquote(decoded) != decoded:
        raise InputForbidden(f"{what} must not be double-encoded: {_show(url)}")
    if _FORBIDDEN_NAME_CHARS.search(decoded):
        raise InputForbidden(f"{what} contains control characters or backslashes: {_show(url)}")
    container, _, name = decoded.lstrip("/").partition("/")
    if not _CONTAINER.match(container):
        raise InputForbidden(f"{what} container {container!r} is not a valid container name")
    segments = name.split("/")
    if any(seg in {".", ".."} for seg in segments) or "" in segments[:-1]:
        raise InputForbidden(f"{what} must not contain '.', '..' or empty path segments: {_show(url)}")
    if len(name) > _MAX_BLOB_NAME:
        raise InputForbidden(f"{what} blob name is longer than {_MAX_BLOB_NAME} characters")
    return container, name


def _is_ip(host: str) -> bool:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        # Integer, octal and hex IPv4 spellings (http://2130706433/) are IPs to a resolver too.
        return bool(re.fullmatch(r"(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+)){0,3}", candidate))
    return True


def _show(url: str, limit: int = 200) -> str:
    return repr(url if len(url) <= limit else url[:limit] + "…")
