"""Public keys of organizations, as published by the hub's organization registry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from renkei.core.crypto import envelope


@dataclass
class OrgEntry:
    org_code: str
    name: str
    kind: str
    endpoints: dict[str, str]
    keys: list[dict[str, Any]]


@dataclass
class KeyDirectory:
    """Organizations and their keys, looked up by key id."""

    orgs: dict[str, OrgEntry] = field(default_factory=dict)
    _public: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, docs: Iterable[Mapping[str, Any]]) -> KeyDirectory:
        kd = cls()
        for doc in docs:
            kd.add(doc)
        return kd

    def add(self, doc: Mapping[str, Any]) -> None:
        entry = OrgEntry(
            org_code=str(doc["org_code"]),
            name=str(doc.get("name", "")),
            kind=str(doc.get("kind", "")),
            endpoints=dict(doc.get("endpoints", {})),
            keys=[dict(k) for k in doc.get("keys", [])],
        )
        self.orgs[entry.org_code] = entry
        self._public.update(envelope.public_keys_from_document({"org_code": entry.org_code, "keys": entry.keys}))

    def public_key(self, kid: str) -> Any | None:
        return self._public.get(kid)

    def encryption_key(self, org_code: str, node: str = "chukan") -> tuple[str, Any] | None:
        """The current (not retiring) encryption key of one node of the organization.

        Answers are encrypted for the inquirer's chukan, which alone can read them.
        """
        entry = self.orgs.get(org_code)
        if entry is None:
            return None
        for k in reversed(entry.keys):
            parsed = envelope.parse_kid(str(k.get("kid", "")))
            if (
                parsed is not None
                and parsed.node == node
                and k.get("use") == "enc"
                and k.get("status", "active") == "active"
            ):
                kid = str(k["kid"])
                return kid, self._public[kid]
        return None
