"""Node configuration: one TOML file per node, overridable by environment variables.

`RENKEI_<SECTION>_<KEY>` overrides `[section] key`, e.g. `RENKEI_NODE_PORT=9443`
or `RENKEI_NODE_DATABASE_URL=postgresql+psycopg://...`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

NODE_KINDS = ("hub", "jlis", "chukan", "atena", "portal", "tsa")


class ConfigError(Exception):
    """The configuration file or an override is wrong; the message says where."""


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class KeysConfig:
    sig: Path
    enc: Path
    public: Path
    hub_public: Path | None = None
    # The time-stamp authority's public keys, pinned: what `renkei audit verify` trusts
    # its answers by, independently of the node's own database.
    tsa_public: Path | None = None


@dataclass(frozen=True)
class StaffConfig:
    """``[staff]``: the staff UI listener (atena), separate from the peers' mTLS listener.

    ``require_terminal_cert`` (default true, the production setting) makes the listener
    demand a client certificate chained to ``terminal_ca``, the organization's own
    terminal CA (``renkei pki terminal``), at the TLS handshake. ``cert``/``key`` default
    to ``[tls]``. ``password_max_age_days`` 0 means passwords do not expire by age;
    ``change_initial_password`` makes a password set by an administrator expire at once.
    """

    port: int
    host: str = "127.0.0.1"
    require_terminal_cert: bool = True
    terminal_ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    password_max_age_days: int = 0
    change_initial_password: bool = True


@dataclass(frozen=True)
class ServerLimits:
    """``[server]``: what every listener of the node (the peers' mutual-TLS listener and the
    staff UI) accepts from a client before it refuses or closes the connection.

    - ``max_header_bytes``: request line and header fields of one request (431 beyond).
    - ``max_header_fields``: header fields of one request (431 beyond).
    - ``header_timeout``: seconds from the end of the TLS handshake, or from the first byte of
      a further request on a kept-alive connection, until the request's head is complete
      (408 if part of a request came, else the connection is just closed).
    - ``body_timeout``: seconds from the end of the head until the body is complete (408).
    - ``handshake_timeout``: seconds for the TLS handshake.
    - ``keep_alive_timeout``: seconds an idle connection is kept between requests.
    - ``max_connections``: open connections per listener; one more is closed right after its
      TLS handshake, unanswered (reading its request is the work the cap saves; the peers'
      outbox retries).

    The defaults suit a node on a LAN: heads of browsers with cookies fit in 32 KiB, and an
    8 MiB message (the largest a node accepts) arrives well within a minute.
    """

    max_header_bytes: int = 32 * 1024
    max_header_fields: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    handshake_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 512


@dataclass(frozen=True)
class WireConfig:
    """``[wire]``: how the node sends messages to its peers.

    - ``batch_in_flight``: requests of small interactive types (inquiries, provisions,
      identity searches) under way to one peer at once; messages that come while they are
      travel together in the next signed envelope (renkei.core.wire.contract, "batches").
      0 sends every message alone.
    - ``batch_max``: messages in one envelope, at most the contract's 64.
    """

    batch_in_flight: int = 2
    batch_max: int = 32


@dataclass(frozen=True)
class NodeConfig:
    kind: str
    org_code: str
    org_name: str
    org_kind: str
    host: str
    port: int
    data_dir: Path
    database_url: str
    tls: TlsConfig
    keys: KeysConfig
    peers: dict[str, str] = field(default_factory=dict)
    master_key: Path | None = None
    max_clock_skew_seconds: int = 300
    hub_org_code: str = ""
    tsa_org_code: str = ""
    guard: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    staff: StaffConfig | None = None
    server: ServerLimits = field(default_factory=ServerLimits)
    wire: WireConfig = field(default_factory=WireConfig)

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def peer(self, name: str) -> str:
        try:
            return self.peers[name].rstrip("/")
        except KeyError:
            raise ConfigError(f"[peers] {name} が設定されていません（peer '{name}' not configured）") from None


def default_database_url(data_dir: Path, kind: str) -> str:
    return f"sqlite:///{(data_dir / f'{kind}.db').resolve()}"


def _apply_env(raw: dict[str, Any], environ: dict[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith("RENKEI_") or name.count("_") < 2:
            continue
        rest = name[len("RENKEI_") :].lower()
        section, _, key = rest.partition("_")
        if section in {"node", "tls", "keys", "peers", "field", "staff", "server", "wire"} and key:
            raw.setdefault(section, {})[key] = value


def _flag(value: Any, where: str) -> bool:
    """A TOML boolean, or its spelling in an environment override."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"{where} は true または false で指定してください: {value}")


def _staff_config(
    raw: dict[str, Any], node: dict[str, Any], p: Callable[[str], Path]
) -> StaffConfig | None:
    section = raw.get("staff")
    if section is None:
        return None
    if not isinstance(section, dict) or "port" not in section:
        raise ConfigError("[staff] には port（職員用画面の待受ポート）が必要です")
    require = _flag(section.get("require_terminal_cert", True), "[staff] require_terminal_cert")
    ca = section.get("terminal_ca")
    if require and not ca:
        raise ConfigError(
            "[staff] require_terminal_cert = true には terminal_ca（端末証明書を発行したCAの証明書）が必要です"
            "（renkei pki terminal で作成します）"
        )
    cfg = StaffConfig(
        port=int(section["port"]),
        host=str(section.get("host") or node.get("host", "127.0.0.1")),
        require_terminal_cert=require,
        terminal_ca=p(str(ca)) if ca else None,
        cert=p(str(section["cert"])) if section.get("cert") else None,
        key=p(str(section["key"])) if section.get("key") else None,
        password_max_age_days=int(section.get("password_max_age_days", 0)),
        change_initial_password=_flag(
            section.get("change_initial_password", True), "[staff] change_initial_password"
        ),
    )
    if not 0 < cfg.port < 65536 or cfg.password_max_age_days < 0:
        raise ConfigError("[staff] port または password_max_age_days の値が範囲外です")
    if (cfg.cert is None) != (cfg.key is None):
        raise ConfigError("[staff] cert と key は両方指定するか、両方省略してください")
    return cfg


def _server_limits(raw: dict[str, Any]) -> ServerLimits:
    """``[server]``: each key a positive number of the default's type (env overrides are text)."""
    section = raw.get("server", {})
    if not isinstance(section, dict):
        raise ConfigError("[server] は表（セクション）で指定してください")
    defaults = ServerLimits()
    names = [f.name for f in fields(ServerLimits)]
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in names:
            raise ConfigError(f"[server] {key} は設定できません（{', '.join(names)}）")
        kind = type(getattr(defaults, key))
        try:
            if isinstance(value, bool) or (kind is int and isinstance(value, float)):
                raise ValueError(value)
            number = kind(value)
        except (TypeError, ValueError):
            number = 0
        if not number > 0:
            what = "正の整数" if kind is int else "正の数（秒）"
            raise ConfigError(f"[server] {key} は{what}で指定してください: {value}")
        values[key] = number
    return replace(defaults, **values)


def _wire_config(raw: dict[str, Any]) -> WireConfig:
    """``[wire]``: whole numbers, ``batch_in_flight`` ≥ 0 and ``batch_max`` 1–64."""
    section = raw.get("wire", {})
    if not isinstance(section, dict):
        raise ConfigError("[wire] は表（セクション）で指定してください")
    names = [f.name for f in fields(WireConfig)]
    values: dict[str, int] = {}
    for key, value in section.items():
        if key not in names:
            raise ConfigError(f"[wire] {key} は設定できません（{', '.join(names)}）")
        try:
            if isinstance(value, bool | float):
                raise ValueError(value)
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        low, high = (0, 1024) if key == "batch_in_flight" else (1, 64)
        if not low <= number <= high:
            raise ConfigError(f"[wire] {key} は{low}以上{high}以下の整数で指定してください: {value}")
        values[key] = number
    return WireConfig(**values)


def load_config(path: Path, environ: dict[str, str] | None = None) -> NodeConfig:
    """Read a node's TOML file; relative paths are relative to the file's directory."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"設定ファイルがありません: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"設定ファイルの書式が誤っています: {path}: {exc}") from None
    _apply_env(raw, dict(os.environ) if environ is None else environ)
    base = path.parent

    def p(value: str) -> Path:
        q = Path(value)
        return q if q.is_absolute() else (base / q)

    try:
        node = raw["node"]
        kind = str(node["kind"])
        if kind not in NODE_KINDS:
            raise ConfigError(f"[node] kind は {', '.join(NODE_KINDS)} のいずれかです: {kind}")
        data_dir = p(str(node["data_dir"]))
        tls = raw["tls"]
        keys = raw["keys"]
        field_cfg = raw.get("field", {})
        return NodeConfig(
            kind=kind,
            org_code=str(node["org_code"]),
            org_name=str(node.get("org_name", "")),
            org_kind=str(node.get("org_kind", "")),
            host=str(node.get("host", "127.0.0.1")),
            port=int(node.get("port", 8443)),
            data_dir=data_dir,
            database_url=str(node.get("database_url") or default_database_url(data_dir, kind)),
            tls=TlsConfig(cert=p(tls["cert"]), key=p(tls["key"]), ca=p(tls["ca"])),
            keys=KeysConfig(
                sig=p(keys["sig"]),
                enc=p(keys["enc"]),
                public=p(keys["public"]),
                hub_public=p(keys["hub_public"]) if keys.get("hub_public") else None,
                tsa_public=p(keys["tsa_public"]) if keys.get("tsa_public") else None,
            ),
            hub_org_code=str(node.get("hub_org_code", "")),
            tsa_org_code=str(node.get("tsa_org_code", "")),
            peers={str(k): str(v) for k, v in raw.get("peers", {}).items()},
            master_key=p(field_cfg["master_key"]) if "master_key" in field_cfg else None,
            max_clock_skew_seconds=int(node.get("max_clock_skew_seconds", 300)),
            guard=dict(raw.get("guard", {})),
            extra=dict(raw.get("extra", {})),
            staff=_staff_config(raw, node, p),
            server=_server_limits(raw),
            wire=_wire_config(raw),
        )
    except KeyError as exc:
        raise ConfigError(f"設定ファイル {path} に必須項目 {exc.args[0]} がありません") from None
    except ValueError as exc:
        raise ConfigError(f"設定ファイル {path} の値が誤っています: {exc}") from None


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _dump_table(name: str, values: dict[str, Any], lines: list[str]) -> None:
    lines.append(f"[{name}]")
    nested = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in nested:
            lines.append(f"{key} = {_toml_scalar(value)}")
    lines.append("")
    for key, value in nested.items():
        _dump_table(f"{name}.{key}", value, lines)


def dump_config(cfg: dict[str, dict[str, Any]]) -> str:
    """Write a minimal TOML (strings, ints, bools, sub-tables) — enough for the files `renkei` generates."""
    lines: list[str] = []
    for section, values in cfg.items():
        _dump_table(section, values, lines)
    return "\n".join(lines)
