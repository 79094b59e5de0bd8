"""What the kernel can do for the swarm, tested the way dockerd uses it.

- VXLAN: a throw-away VXLAN link (every overlay is one).
- IPVS: dockerd asks generic netlink for the "IPVS" family (and logs "Could not get ipvs
  family information" when it is absent); the query loads ip_vs where it can, as dockerd's does.
- ESP: docker's encrypted overlays install ESP states with AES-GCM (rfc4106(gcm(aes))); one
  is added in a new network namespace, which takes it away again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ssh import Result
from .base import Fact

IPVS_LOG_LINE = "Could not get ipvs family information"


@dataclass(frozen=True)
class Capability:
    ok: bool | None  # None: could not be tested
    error: str = ""


_TEST_LINK = "labctlvxtest"


@dataclass(frozen=True)
class VxlanSupport(Fact[Capability]):
    command = (f"ip link del {_TEST_LINK} 2>/dev/null; "
               f"ip link add {_TEST_LINK} type vxlan id 16777200 dstport 0 nolearning && ip link del {_TEST_LINK}")

    def parse(self, result: Result) -> Capability:
        return Capability(result.ok, "" if result.ok else result.err.strip()[:200])


# CTRL_CMD_GETFAMILY for "IPVS" on a NETLINK_GENERIC socket; prints yes, no or unknown.
_GENL_QUERY = r"""
import socket, struct
try:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
    s.settimeout(2)
    s.bind((0, 0))
    name = b"IPVS\0"
    attr = struct.pack("HH", 4 + len(name), 2) + name
    attr += b"\0" * ((4 - len(attr) % 4) % 4)
    body = struct.pack("BBH", 3, 1, 0) + attr
    s.send(struct.pack("IHHII", 16 + len(body), 0x10, 1, 1, 0) + body)
    data = s.recv(65536)
    kind = struct.unpack("IH", data[:6])[1]
    print("no" if kind == 2 and struct.unpack("i", data[16:20])[0] != 0 else "yes")
except OSError as exc:
    print("unknown", exc)
"""


@dataclass(frozen=True)
class IpvsSupport(Fact[Capability]):
    command = "python3 -c " + "'" + _GENL_QUERY.strip().replace("'", "") + "'"

    def parse(self, result: Result) -> Capability:
        word, _, rest = result.out.strip().partition(" ")
        if not result.ok or word not in ("yes", "no"):
            return Capability(None, (rest or result.err.strip() or f"exit {result.rc}")[:200])
        return Capability(word == "yes", "" if word == "yes" else 'no generic netlink family "IPVS"')


_ESP_KEY = "0x0102030405060708090a0b0c0d0e0f1011121314"  # 128-bit key + 32-bit salt


_ESP_SA = "src 198.51.100.1 dst 198.51.100.2 proto esp spi 0x4c414201"


@dataclass(frozen=True)
class EspSupport(Fact[Capability]):
    """Without unshare(1) the state is added where the host's own are, then removed."""

    command = ("if command -v unshare >/dev/null; then "
               f"unshare -n ip xfrm state add {_ESP_SA} mode transport aead 'rfc4106(gcm(aes))' {_ESP_KEY} 128; "
               f"else ip xfrm state add {_ESP_SA} mode transport aead 'rfc4106(gcm(aes))' {_ESP_KEY} 128 "
               f"&& ip xfrm state del {_ESP_SA}; fi")

    def parse(self, result: Result) -> Capability:
        return Capability(result.ok, "" if result.ok else result.err.strip()[:200])


@dataclass(frozen=True)
class KernelRelease(Fact[str]):
    command = "uname -r"

    def parse(self, result: Result) -> str:
        return result.out.strip()
