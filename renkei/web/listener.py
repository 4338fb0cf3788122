"""The staff UI's listener, beside the peers' listener in the same process (see core.serving).

The staff listener checks terminal certificates at the TLS handshake (client certificates
required, chained to the organization's terminal CA): a browser without a certificate of
that CA never reaches the app. Both listeners share one event loop, so the staff app uses
the node's runtime (its peer client is bound to that loop), one pair of signal handlers
stops both, and both take their limits from the node's ``[server]`` section.
"""

from __future__ import annotations

import ssl
from typing import Any

from renkei.core.config import ConfigError, NodeConfig, StaffConfig
from renkei.core.crypto import pki
from renkei.core.wire.serving import ListenerConfig


def staff_ssl_context(cfg: NodeConfig, staff: StaffConfig) -> ssl.SSLContext:
    """TLS of the staff listener: terminal certificates when required, else none asked for."""
    cert, key = staff.cert or cfg.tls.cert, staff.key or cfg.tls.key
    if not staff.require_terminal_cert:
        return pki.server_ssl_context(cert, key, None)
    if staff.terminal_ca is None or not staff.terminal_ca.is_file():
        raise ConfigError(f"[staff] terminal_ca の証明書がありません: {staff.terminal_ca}")
    return pki.server_ssl_context(cert, key, staff.terminal_ca)


def staff_listener(ui: Any, cfg: NodeConfig, staff: StaffConfig) -> ListenerConfig:
    """The staff UI's listener (no lifespan: the node's app runs it on the peers' listener)."""
    return ListenerConfig(
        ui, host=staff.host, port=staff.port, tls=staff_ssl_context(cfg, staff), limits=cfg.server, lifespan="off"
    )
