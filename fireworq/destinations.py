"""Where deliveries may go: FIREWORQ_DISPATCH_DENY and FIREWORQ_DISPATCH_ALLOW
(docs/configuration.md, Delivery to workers, and docs/operations.md, Where deliveries may go).

Both are lists of CIDRs (``10.0.0.0/8``, ``::1``: a bare address is a one-address network) and
host names (``worker.internal``; ``*.example.com`` for every name under example.com). The rule,
for a connection to a host name that resolved to some addresses:

1. a host name in ALLOW: allowed, whatever it resolves to;
2. else a host name in DENY: denied;
3. else each address: allowed if it is in an ALLOW network, else denied if it is in a DENY
   network. One denied address denies the connection.

So ALLOW wins over DENY at each step. With DENY empty nothing is denied, whatever ALLOW says.
IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) are checked as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import attrs

__all__ = ["DestinationDenied", "DestinationList", "DestinationPolicy", "parse_destinations"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Digits and dots only, or an IPv6 form: meant as an address, so not taken for a host name.
_ADDRESS_LIKE = re.compile(r"[0-9.]+|[0-9A-Fa-f:.%]*:[0-9A-Fa-f:.%]*")
_HOST_NAME = re.compile(r"([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class DestinationDenied(Exception):
    """A connection the policy refuses; ``destination`` is the address (or host name) denied."""

    def __init__(self, destination: str) -> None:
        super().__init__(f"Destination denied: {destination}")
        self.destination = destination


@attrs.frozen
class DestinationList:
    """One parsed list: networks and host names (lower case, ``*.`` kept for wildcards)."""

    text: str
    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.networks or self.names or self.suffixes)

    def has_name(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def has_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def parse_destinations(text: str) -> DestinationList:
    """A comma-separated list of CIDRs and host names; raises ValueError naming the bad
    entry."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    suffixes: list[str] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            if "/" in entry or _ADDRESS_LIKE.fullmatch(entry):
                raise ValueError(f"has an invalid CIDR: {entry!r}") from None
        name = entry.lower().rstrip(".")
        wildcard = name.startswith("*.")
        if wildcard:
            name = name[2:]
        if not _HOST_NAME.fullmatch(name):
            raise ValueError(f"has an entry that is neither a CIDR nor a host name: {entry!r}")
        if wildcard:
            suffixes.append("." + name)
        else:
            names.add(name)
    return DestinationList(text, tuple(networks), frozenset(names), tuple(suffixes))


def as_address(host: str) -> IPAddress | None:
    """The address a literal host is (brackets, IPv6 zone and IPv4 mapping removed), or None
    for a host name."""
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@attrs.frozen
class DestinationPolicy:
    deny: DestinationList = DestinationList("")
    allow: DestinationList = DestinationList("")

    @property
    def active(self) -> bool:
        """Whether anything can be denied at all (with DENY empty, nothing is checked)."""
        return bool(self.deny)

    def name_decision(self, host: str) -> bool | None:
        """True: the host name is allowed, whatever it resolves to; False: denied; None: its
        addresses decide. ``host`` is lower case; a literal address is never a name."""
        if as_address(host) is not None:
            return None
        host = host.rstrip(".")
        if self.allow.has_name(host):
            return True
        if self.deny.has_name(host):
            return False
        return None

    def address_allowed(self, address: IPAddress) -> bool:
        return self.allow.has_address(address) or not self.deny.has_address(address)

    def check_literal(self, host: str) -> None:
        """The check a push makes of its URL's host: a denied literal address, or a denied
        host name, raises DestinationDenied. Names are resolved only when delivering."""
        if not self.active:
            return
        host = host.lower()
        decision = self.name_decision(host)
        if decision is False:
            raise DestinationDenied(host.rstrip("."))
        address = as_address(host)
        if decision is None and address is not None and not self.address_allowed(address):
            raise DestinationDenied(str(address))

    def check_resolved(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses a connection to ``host`` may use, once it resolved to ``addresses``;
        raises DestinationDenied naming the first address (or the name) denied."""
        decision = self.name_decision(host.lower())
        if decision is False:
            raise DestinationDenied(host.lower().rstrip("."))
        checked: list[str] = []
        for text in addresses:
            address = as_address(text)
            if address is None:
                raise DestinationDenied(text)  # a resolver answer that is no address
            if decision is None and not self.address_allowed(address):
                raise DestinationDenied(str(address))
            checked.append(text)
        return checked

