"""
A node's host and port from an address as a user writes it: the one definition for
:class:`ncplib.Fleet` and the command line.

The forms are those of URLs without a scheme (RFC 3986, section 3.2.2): ``"host"``,
``"host:port"``, and for an IPv6 address ``"[IPv6]"`` or ``"[IPv6]:port"``. A bare IPv6 address
(``"fe80::1"``, no brackets) is also taken, as a host without a port. Anything else is refused
up front, so a typing error (a scheme, a second port, a stray character) fails at once instead
of as a name lookup retried for ever.
"""

from __future__ import annotations

import ipaddress

__all__ = ["split_address", "check_host", "check_port"]

# What a host name (or an IPv4 address) is made of besides ASCII letters and digits: hyphens,
# dots, and the underscores some internal names have. (Non-ASCII characters are left to IDNA.)
_NAME_PUNCTUATION = frozenset("-._")


def split_address(text: str, default_port: int) -> tuple[str, int]:
    """
    Splits an address into its host and port.

    :param text: ``"host"``, ``"host:port"``, ``"[IPv6]"``, ``"[IPv6]:port"`` or a bare IPv6
        address.
    :param default_port: The port when the address has none.
    :raises ValueError: if the address is none of those forms, its host is empty or not a host
        name or IP address, or its port is not a number from 1 to 65535; the message says which.
    :returns: ``(host, port)``, the host without brackets.
    """
    if "://" in text:
        raise ValueError(f"invalid address {text!r}: write it without a scheme such as tcp://")
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end >= 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {text!r}: write [IPv6] or [IPv6]:port")
        host = text[1:end]
        if host and ":" not in host:
            raise ValueError(f"invalid address {text!r}: brackets are for an IPv6 address, as in [::1]:9999")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        # A host alone: a name, an IPv4 address or a bare IPv6 address (check_host tells).
        host = text
    check_host(host, text)
    if port_text is None:
        return host, default_port
    # Only ASCII digits (int() would take '+80', ' 80' or other scripts' digits), and few of them.
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    return host, check_port(int(port_text) if digits else 0, text)


def check_port(port: int, address: object) -> int:
    """
    Checks that ``port`` is a TCP port a node can listen on.

    :param address: The address it comes from, for the message.
    :raises ValueError: if it is not from 1 to 65535.
    :returns: ``port``.
    """
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in address {address!r}: use a number from 1 to 65535")
    return port


def check_host(host: str, address: object) -> None:
    """
    Checks that ``host`` is a host name, an IPv4 address or an IPv6 address (without brackets).

    :param address: The address it comes from, for the message.
    :raises ValueError: if it is empty, has a character no host name or IP address has, has a
        colon but is not an IPv6 address, has an empty label (``node..x``), a label over 63
        bytes (as IDNA encodes it) or one starting or ending with ``-``, or is over 253 characters.
    """
    if not host:
        raise ValueError(f"invalid address {address!r}: no host")
    if ":" in host:
        if not _is_ipv6(host):
            raise ValueError(
                f"invalid host {host!r} in address {address!r}: not an IPv6 address"
                " (write host, host:port or [IPv6]:port)"
            )
        return
    for char in host:
        if char.isascii() and not (char.isalnum() or char in _NAME_PUNCTUATION):
            raise ValueError(
                f"invalid host {host!r} in address {address!r}: a host name has only letters, "
                f"digits, '-', '_' and '.', not {char!r}"
            )
    # Labels as DNS has them (RFC 1035, 2.3.4; an internationalised one as IDNA encodes it):
    # none empty (but for the root's, a final dot), none over 63 bytes, 253 in all.
    name = host[:-1] if host.endswith(".") else host
    for label in name.split("."):
        try:
            encoded = label.encode("idna")
        except UnicodeError:
            encoded = b""
        if not encoded or len(encoded) > 63 or label.startswith("-") or label.endswith("-"):
            raise ValueError(
                f"invalid host {host!r} in address {address!r}: each part between dots is 1 to "
                f"63 letters, digits, '-' or '_', not starting or ending with '-'"
            )
    if len(name) > 253:
        raise ValueError(f"invalid host {host!r} in address {address!r}: longer than 253 characters")


def _is_ipv6(text: str) -> bool:
    # With a zone (fe80::1%eth0) too.
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
