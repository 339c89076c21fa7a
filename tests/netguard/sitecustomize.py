"""Block every network connection that leaves this machine (loaded via PYTHONPATH in tests).

With ``COOKBOOK_NETGUARD=1`` any connect or DNS lookup to a non-loopback address raises
``OSError`` and, when ``COOKBOOK_NETGUARD_LOG`` names a file, is appended to it. Jupyter
kernels started by nbmake inherit the environment, so notebooks run under the same guard.
"""

import os
import socket

if os.environ.get("COOKBOOK_NETGUARD") == "1":
    _LOCAL = ("localhost", "127.", "::1", "0.0.0.0", "")

    def _is_local(host) -> bool:
        host = str(host)
        return any(host == p or (p.endswith(".") and host.startswith(p)) for p in _LOCAL)

    def _refuse(what):
        log = os.environ.get("COOKBOOK_NETGUARD_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\t{what}\n")
        raise OSError(f"network access is blocked in tests: {what}")

    _connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(f"connect {address!r}")
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(f"connect_ex {address!r}")
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_local(host):
            _refuse(f"getaddrinfo {host!r}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
